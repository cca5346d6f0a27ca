"""Super-resolution architectures, one file each."""

from . import espcn  # noqa: F401
