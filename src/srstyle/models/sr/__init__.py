"""Super-resolution architectures, one file each; importing registers them."""

from . import dbpn, drcn, edsr, espcn, fsrcnn, srcnn, srdensenet, srgan, srresnet, vdsr  # noqa: F401
