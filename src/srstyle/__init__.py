"""srstyle: super-resolution and neural style transfer MLOps pipeline."""
__version__ = "0.1.0"
