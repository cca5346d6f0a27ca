"""Moved to :mod:`srstyle.models.style.gatys` (Gatys et al. optimise an image; nothing is trained).
This alias keeps old imports working."""

from ..models.style.gatys import GatysResult, gatys_transfer, max_increase, resize_to  # noqa: F401
