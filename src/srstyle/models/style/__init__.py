"""Style-transfer networks: Johnson's TransformerNet and the Meta-Network with its generated transformer."""

from ..registry import Registry

STYLE_NETS = Registry("style network")

from . import metanet, transformer_net  # noqa: E402,F401  (registration)
