"""Text encoder libraries (quantization of the exported ONNX encoder, ...)."""
