"""ONNX Runtime sessions with the device chosen from config."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from service.encoding.base import EncoderError


def providers_for(device: str) -> list[str]:
    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise EncoderError(
                "RECSVC_DEVICE=cuda but onnxruntime has no CUDAExecutionProvider "
                f"(available: {', '.join(available)}); install recsvc[gpu] on a CUDA machine or use device=auto"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "auto":
        return (["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []) + ["CPUExecutionProvider"]
    raise EncoderError(f"unknown device {device!r} (expected auto, cpu or cuda)")


def make_session(path: Path, device: str = "auto", threads: int = 0) -> ort.InferenceSession:
    if not Path(path).is_file():
        raise EncoderError(f"ONNX model not found: {path}")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads > 0:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=providers_for(device))
