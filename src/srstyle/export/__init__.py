"""Model export (ONNX) and its parity checks."""
