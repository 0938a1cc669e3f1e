"""Text encoding for the service: tokenize -> onnxruntime session -> pool + normalise.

Modules: ``base`` (Encoder protocol, EncoderError), ``tokenize``, ``session``,
``onnx_encoder`` (production), ``fake`` (test double), ``golden`` (start-up check),
``batcher`` (asyncio micro-batching). No torch here.
"""
