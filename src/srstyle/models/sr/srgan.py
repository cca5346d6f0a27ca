"""SRGAN: Ledig et al., "Photo-Realistic Single Image Super-Resolution Using a Generative Adversarial
Network", CVPR 2017.

The generator is SRResNet (same architecture, same file layout of weights); what makes it SRGAN is the
training: the generator is first trained with MSE (SRResNet), then jointly with the discriminator of
``discriminator.py`` on  l = l_content + 1e-3 * l_adversarial,  with l_content = MSE, VGG22 or VGG54
(``srstyle.losses.content_loss``).  ``trainer = "adversarial"`` routes it to ``srstyle.train.srgan``.
"""

from __future__ import annotations

from ..registry import MODELS
from .srresnet import SRResNet


@MODELS.register("srgan")
class SRGAN(SRResNet):
    trainer = "adversarial"
