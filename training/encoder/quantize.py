"""int8 schemes for the exported ONNX encoder, and the batch-invariance probe.

The served int8 file must give a text the same vector whatever it is batched with.
``quantize_dynamic`` (``DynamicQuantizeLinear`` + ``MatMulInteger``) does not: it takes one
activation scale per tensor, i.e. over every row of the batch, padding included, so a
text's vector moves with its batch-mates (cosine .995 alone vs batched, see
``benchmarks/quantization.py``). The served scheme, :data:`ROWWISE_SCHEME`, is
``MatMulNBits`` with 8-bit weights and ``accuracy_level`` 4 (int8 compute): weights are
int8 per block of ``block_size`` along K (symmetric, one scale per block and output
column), and onnxruntime quantizes the activation at run time per row and per block of
``block_size`` along K, so a row's int8 codes depend on that row alone: batch-invariant by
construction, with no calibration set. Blocks of 32 measured bit-identical alone vs
batched; blocks of 128 were not (cosine .99986, onnxruntime's kernel path differs with
the row count there), so the export also checks invariance, on every export.

Static QDQ quantization (fixed activation scales from calibration texts) is batch-invariant
too, but per-tensor activation scales lose too much on this encoder (worst cosine .93 even
with 6 MatMuls kept fp32); :func:`quantize_static_qdq` stays for the benchmark table.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.core.pooling import l2_normalize, mean_pool

INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "last_hidden_state"

# A quantizer: (fused fp32 graph, destination, MatMul nodes kept fp32) -> writes destination.
Quantizer = Callable[[Path, Path, Sequence[str]], None]


@dataclass(frozen=True)
class RowwiseInt8:
    """``MatMulNBits`` 8-bit weights, int8 compute with per-row, per-block activation scales."""

    name: str = "matmul_nbits_int8_rowwise"
    op_type: str = "MatMulNBits"
    bits: int = 8
    block_size: int = 64
    # onnxruntime's accuracy_level 4 = int8 compute: A is quantized per row, per block of block_size.
    accuracy_level: int = 4
    symmetric: bool = True
    activations: str = "dynamic, per row and per block of block_size along K (batch-invariant)"
    calibration: str = "none: activation scales are computed per row at run time"
    # Fuse attention as MultiHeadAttention with Q, K, V MatMuls apart (quantized too), not as the
    # Attention op whose packed QKV weight stays fp32.
    separate_qkv: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ROWWISE_SCHEME = RowwiseInt8()


@contextlib.contextmanager
def quiet_loggers() -> Iterator[None]:
    """onnxruntime.quantization logs per node / per tensor on the root and its own loggers."""
    names = ["", "onnxruntime.quantization.matmul_nbits_quantizer"]
    saved = [(lg, lg.level) for lg in (logging.getLogger(n) for n in names)]
    for lg, level in saved:
        lg.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        for lg, level in saved:
            lg.setLevel(level)


def fuse_for_cpu(
    src: Path, dst: Path, *, num_heads: int, hidden_size: int, separate_qkv: bool = False
) -> dict[str, int]:
    """BERT graph fusion (offline, no ORT-level rewrites so the file stays portable). -> fused op counts

    EmbedLayerNormalization, SkipLayerNormalization, BiasGelu, and attention as ``Attention``
    (packed QKV weight inside the op) or, with ``separate_qkv``, as ``MultiHeadAttention`` fed
    by three MatMuls that a quantizer can reach.
    """
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    options = FusionOptions("bert")
    options.use_multi_head_attention = separate_qkv
    with quiet_loggers():
        fused = optimizer.optimize_model(
            str(src),
            model_type="bert",
            num_heads=num_heads,
            hidden_size=hidden_size,
            opt_level=0,
            optimization_options=options,
        )
    stats = {k: int(v) for k, v in fused.get_fused_operator_statistics().items() if v}
    fused.save_model_to_file(str(dst))
    return stats


def matmul_nodes(path: Path) -> list[str]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return [n.name for n in model.graph.node if n.op_type == "MatMul"]


def quantize_rowwise(
    src: Path,
    dst: Path,
    keep_fp32: Sequence[str] = (),
    scheme: RowwiseInt8 = ROWWISE_SCHEME,
    *,
    only: Sequence[str] | None = None,
) -> None:
    """Every MatMul of ``src`` with a constant weight -> ``MatMulNBits`` per ``scheme``, except ``keep_fp32``.

    ``only``: quantize just these nodes (sensitivity probes).
    """
    if only is not None:  # the quantizer's nodes_to_include does not restrict MatMul nodes (onnxruntime 1.32)
        keep_fp32 = [n for n in matmul_nodes(src) if n not in set(only)]
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    with quiet_loggers():
        q = MatMulNBitsQuantizer(
            onnx.load(str(src)),
            bits=scheme.bits,
            block_size=scheme.block_size,
            is_symmetric=scheme.symmetric,
            accuracy_level=scheme.accuracy_level,
            nodes_to_exclude=list(keep_fp32),
        )
        q.process()
        q.model.save_model_to_file(str(dst), use_external_data_format=False)


def quantize_dynamic_per_tensor(src: Path, dst: Path, keep_fp32: Sequence[str] = ()) -> None:
    """The former int8 scheme (kept for comparison): ``quantize_dynamic``, MatMul only, per-channel weights.

    Its activation scale is one per tensor, computed over the whole batch: not batch-invariant.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_loggers():
        quantize_dynamic(
            str(src),
            str(dst),
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            reduce_range=False,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=list(keep_fp32),
            # The fused graph has contrib ops that shape inference cannot type; their outputs are float.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )


def quantize_static_qdq(
    src: Path,
    dst: Path,
    feeds: Sequence[dict[str, np.ndarray]],
    keep_fp32: Sequence[str] = (),
    *,
    method: str = "MinMax",
    per_channel: bool = True,
) -> None:
    """Static QDQ int8 of the MatMuls: fixed per-tensor activation scales calibrated on ``feeds``.

    ``method``: MinMax | Percentile | Entropy. The fused graph's contrib ops are typed by
    onnxruntime's symbolic shape inference first (without it the calibrator finds no
    activation to calibrate and only the weights are quantized).
    """
    import tempfile

    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.it, None)

        def rewind(self) -> None:
            self.it = iter(feeds)

    with tempfile.TemporaryDirectory(prefix="recsvc-qdq-") as tmp, quiet_loggers():
        typed = Path(tmp) / "typed.onnx"
        onnx.save(SymbolicShapeInference.infer_shapes(onnx.load(str(src)), auto_merge=True), str(typed))
        quantize_static(
            str(typed),
            str(dst),
            Reader(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["MatMul"],
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=list(keep_fp32),
            calibrate_method=CalibrationMethod[method],
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )


# ----------------------------------------------------------------------------- measuring
def session(path: Path, threads: int = 0) -> Any:
    """A CPU session as the service opens one (full graph optimisation)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def embed_batch(sess: Any, tokenizer: Any, texts: Sequence[str], *, max_length: int) -> np.ndarray:
    """One padded batch through ``sess`` -> unit vectors [b, H] (rows in ``texts`` order)."""
    enc = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="np")
    ids = enc["input_ids"].astype(np.int64)  # [b, L]
    mask = enc["attention_mask"].astype(np.int64)  # [b, L]
    hidden = sess.run([OUTPUT_NAME], {INPUT_NAMES[0]: ids, INPUT_NAMES[1]: mask})[0]  # [b, L, H]
    return l2_normalize(mean_pool(hidden, mask))  # [b, H]


@dataclass(frozen=True)
class Invariance:
    """Each probe text alone vs the same text inside batches of other texts."""

    min_cosine: float
    max_abs_diff: float
    n_texts: int
    n_batches: int
    worst_text: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "min_cosine": round(self.min_cosine, 7),
            "max_abs_diff": float(f"{self.max_abs_diff:.3g}"),
            "n_texts": self.n_texts,
            "n_batches": self.n_batches,
        }


def batch_invariance(
    sess: Any, tokenizer: Any, texts: Sequence[str], *, max_length: int, n_probe: int = 24, seed: int = 0
) -> Invariance:
    """Vector of a text alone vs inside three batches: next to the longest text of ``texts`` (padded),
    after the shortest one, and among 6 random others plus the longest (the service's mixed batches).
    """
    if len(texts) < 2:
        raise ValueError("batch_invariance needs at least 2 texts")
    rng = np.random.default_rng(seed)
    by_len = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
    shortest, longest = texts[by_len[0]], texts[by_len[-1]]
    probes = rng.choice(len(texts), size=min(n_probe, len(texts)), replace=False)
    worst, worst_diff, worst_text, n_batches = 1.0, 0.0, "", 0
    for i in probes:
        text = texts[int(i)]
        alone = embed_batch(sess, tokenizer, [text], max_length=max_length)[0]  # [H]
        others = [texts[int(j)] for j in rng.choice(len(texts), size=min(6, len(texts)), replace=False)]
        for batch, row in (([text, longest], 0), ([shortest, text], 1), ([*others[:3], text, *others[3:], longest], 3)):
            vec = embed_batch(sess, tokenizer, batch, max_length=max_length)[row]  # [H]
            cos = float(alone @ vec)
            n_batches += 1
            worst_diff = max(worst_diff, float(np.abs(alone - vec).max()))
            if cos < worst:
                worst, worst_text = cos, text
    return Invariance(worst, worst_diff, len(probes), n_batches, worst_text)
