"""onnxruntime sessions: device choice, graph optimisation, threads."""

from __future__ import annotations

import logging
from pathlib import Path

import onnxruntime as ort

from service.encoding.base import EncoderError

logger = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def cuda_available() -> bool:
    return CUDA in ort.get_available_providers()


def make_session(path: Path, device: str = "auto", threads: int = 0) -> ort.InferenceSession:
    """An inference session for the ONNX file at ``path``.

    device: ``cuda`` -> CUDAExecutionProvider (error if this onnxruntime build or machine has
    none); ``cpu``; ``auto`` -> CUDA when available, else CPU. threads: intra-op threads
    (0 = onnxruntime's default, one per core). Full graph optimisation (fusions) is on.
    """
    if device not in DEVICES:
        raise EncoderError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if threads < 0:
        raise EncoderError(f"threads must be >= 0, got {threads}")
    path = Path(path)
    if not path.is_file():
        raise EncoderError(f"ONNX model not found: {path}")
    if device == "cuda" and not cuda_available():
        raise EncoderError(
            "device 'cuda' requested but onnxruntime has no CUDAExecutionProvider "
            f"(available: {', '.join(ort.get_available_providers())}); install onnxruntime-gpu or use device=cpu"
        )
    use_cuda = device == "cuda" or (device == "auto" and cuda_available())
    providers = [CUDA, CPU] if use_cuda else [CPU]

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    # One model, one request at a time per call: no parallelism between graph nodes.
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise EncoderError(f"cannot load ONNX model {path}: {exc}") from exc
    active = session.get_providers()
    if device == "cuda" and CUDA not in active:
        # onnxruntime falls back to CPU silently when the CUDA libraries do not load.
        raise EncoderError(f"CUDAExecutionProvider did not initialise for {path} (active: {', '.join(active)})")
    logger.info("onnx session %s on %s (intra-op threads: %s)", path.name, active[0], threads or "default")
    return session
