"""onnxruntime sessions: device choice, graph optimisation, threads.

:class:`SessionTuning` holds the knobs that matter on a small shared CPU box
(``RECSVC_ONNX__*`` in ``service/config.py``); the defaults were chosen by
``python -m benchmarks.engine --study sessions`` (docs/OPERATIONS.md, "Encoder engine").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from service.encoding.base import EncoderError

logger = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

GRAPH_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
EXECUTION_MODES = {"sequential": ort.ExecutionMode.ORT_SEQUENTIAL, "parallel": ort.ExecutionMode.ORT_PARALLEL}


@dataclass(frozen=True)
class SessionTuning:
    """Session options besides the intra-op thread count.

    spinning: intra-op worker threads busy-wait between ops (``session.intra_op.allow_spinning``).
    Off by default: spinning threads burn the cores the event loop, the tokenizer and the
    pooling stage need, and on a shared 2-core box they slowed one-text calls by ~1.5x.
    inter_op_threads: threads running independent graph nodes in parallel (only with
    execution_mode "parallel"; a BERT graph is a chain, so 1 is right).
    graph_level: graph optimisation level ("all" = every fusion, incl. layout changes).
    """

    spinning: bool = False
    inter_op_threads: int = 1
    graph_level: str = "all"
    execution_mode: str = "sequential"

    def __post_init__(self) -> None:
        if self.graph_level not in GRAPH_LEVELS:
            raise EncoderError(f"graph_level must be one of {', '.join(GRAPH_LEVELS)}, got {self.graph_level!r}")
        if self.execution_mode not in EXECUTION_MODES:
            raise EncoderError(
                f"execution_mode must be one of {', '.join(EXECUTION_MODES)}, got {self.execution_mode!r}"
            )
        if self.inter_op_threads < 0:
            raise EncoderError(f"inter_op_threads must be >= 0, got {self.inter_op_threads}")

    def options(self, threads: int) -> ort.SessionOptions:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = GRAPH_LEVELS[self.graph_level]
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = self.inter_op_threads
        opts.execution_mode = EXECUTION_MODES[self.execution_mode]
        spin = "1" if self.spinning else "0"
        opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
        opts.add_session_config_entry("session.inter_op.allow_spinning", spin)
        return opts


def cuda_available() -> bool:
    return CUDA in ort.get_available_providers()


def make_session(
    path: Path, device: str = "auto", threads: int = 0, tuning: SessionTuning | None = None
) -> ort.InferenceSession:
    """An inference session for the ONNX file at ``path``.

    device: ``cuda`` -> CUDAExecutionProvider (error if this onnxruntime build or machine has
    none); ``cpu``; ``auto`` -> CUDA when available, else CPU. threads: intra-op threads
    (0 = onnxruntime's default, one per core). tuning: the other session options
    (default :class:`SessionTuning`: full graph optimisation, no spinning, sequential).
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
    tuning = tuning or SessionTuning()
    opts = tuning.options(threads)
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise EncoderError(f"cannot load ONNX model {path}: {exc}") from exc
    active = session.get_providers()
    if device == "cuda" and CUDA not in active:
        # onnxruntime falls back to CPU silently when the CUDA libraries do not load.
        raise EncoderError(f"CUDAExecutionProvider did not initialise for {path} (active: {', '.join(active)})")
    logger.info("onnx session %s on %s (intra-op threads: %s, %s)", path.name, active[0], threads or "default", tuning)
    return session
