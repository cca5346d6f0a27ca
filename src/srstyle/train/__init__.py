"""Training loops (SR now; GAN and style trainers plug into the same utilities)."""
