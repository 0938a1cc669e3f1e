"""Text encoder libraries: fine-tuning (``finetune``), held-out retrieval evaluation (``heldout``), downstream
checks (``downstream``), catalog and profile embedding (``embed``, ``profile_vectors``, the disk ``cache``),
and the ONNX export with its int8 recipe (``export``, ``quantize``)."""
