"""Evaluation: the published PSNR/SSIM protocol, the evaluate stage and comparison pictures."""
