"""Choose the int8 file: row-wise int8 with the fewest most-sensitive MatMuls kept fp32 that meets the bar.

:func:`choose_int8` quantizes every MatMul first (or the :data:`DEFAULT_KEEP_FP32` set when
it names some); if the worst cosine against the torch reference (:mod:`training.encoder.parity`)
is below the bar plus :data:`INT8_MARGIN`, it measures each MatMul's sensitivity on the worst
texts and keeps the most sensitive ones fp32, fewest first (:data:`INT8_KEEP_SCHEDULE`).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from tqdm.auto import tqdm

from training.encoder.parity import onnx_vectors, row_cosines
from training.encoder.quantize import matmul_nodes, quantize_rowwise

logger = logging.getLogger(__name__)

# The search aims this far above the threshold, so texts outside the parity set keep a margin.
INT8_MARGIN = 0.002
# How many sensitive MatMuls may stay fp32 (of 36 in MiniLM-L6, Q/K/V separate) before int8 is not worth shipping.
INT8_KEEP_SCHEDULE = (1, 2, 3, 4, 6, 8, 10, 12)
# Texts (the worst under all-int8) on which per-node sensitivity is measured.
SENSITIVITY_TEXTS = 12
# MatMuls kept fp32 before any search (name suffixes). Row-wise int8 of all 36 MatMuls of
# all-MiniLM-L6-v2 measured .9989 worst-case cosine on 500 real item texts: none kept.
DEFAULT_KEEP_FP32: tuple[str, ...] = ()


def quantize_int8(src: Path, dst: Path, keep_fp32: Sequence[str] = (), only: Sequence[str] | None = None) -> None:
    """Row-wise int8 (:data:`training.encoder.quantize.ROWWISE_SCHEME`) of ``src``, the fused graph.

    ``keep_fp32``: MatMul nodes left in fp32; ``only``: quantize just these nodes (sensitivity probes).
    """
    quantize_rowwise(src, dst, keep_fp32=keep_fp32, only=only)


class Candidate(NamedTuple):
    """One quantized file and its cosines against the torch reference."""

    kept_fp32: list[str]
    cosines: np.ndarray  # [N]
    path: Path

    @property
    def worst(self) -> float:
        return float(self.cosines.min())


class Int8Choice(NamedTuple):
    kept_fp32: list[str]
    cosines: np.ndarray  # [N] against the torch reference
    sensitivity: dict[str, float]
    search: list[dict[str, Any]]


def choose_int8(
    fused: Path,
    dst: Path,
    tokenizer: Any,
    texts: Sequence[str],
    reference: np.ndarray,
    *,
    max_length: int,
    min_cosine: float,
    work_dir: Path,
) -> Int8Choice:
    """Quantize ``fused`` to ``dst``, keeping the fewest most-sensitive MatMuls fp32 that meet the bar.

    reference: [N, H] torch vectors of ``texts``. Raises ``RuntimeError`` when no choice reaches ``min_cosine``.
    """
    target = min_cosine + INT8_MARGIN
    search: list[dict[str, Any]] = []

    def trial(keep: list[str]) -> Candidate:
        path = work_dir / f"int8-trial{len(search)}.onnx"
        quantize_int8(fused, path, keep_fp32=keep)
        cos = row_cosines(onnx_vectors(path, tokenizer, texts, max_length=max_length), reference)  # [N]
        search.append({"kept_fp32": len(keep), "min": round(float(cos.min()), 6), "mean": round(float(cos.mean()), 6)})
        logger.info("int8 with %d MatMuls kept fp32: min cosine %.5f, mean %.5f", len(keep), cos.min(), cos.mean())
        return Candidate(keep, cos, path)

    names = matmul_nodes(fused)
    default = [n for suffix in DEFAULT_KEEP_FP32 for n in names if n.endswith("/" + suffix)]
    sensitivity: dict[str, float] = {}
    best: Candidate | None = None
    if len(default) == len(DEFAULT_KEEP_FP32):
        best = trial(default)
        if best.worst >= target:
            return _finish(best, dst, texts, min_cosine, sensitivity, search)
    else:
        logger.info("graph lacks the default fp32 MatMuls (%s ...); measuring sensitivity", DEFAULT_KEEP_FP32[0])
    all_int8 = best if best is not None and not best.kept_fp32 else trial([])
    if best is None or all_int8.worst > best.worst:
        best = all_int8
    if all_int8.worst < target:
        worst = np.argsort(all_int8.cosines)[:SENSITIVITY_TEXTS]
        probe_texts = [texts[i] for i in worst]
        probe_ref = reference[worst]  # [K, H]
        probe = work_dir / "int8-probe.onnx"
        for name in tqdm(names, desc="int8 sensitivity", unit="node", leave=False):
            quantize_int8(fused, probe, only=[name])
            cos = row_cosines(onnx_vectors(probe, tokenizer, probe_texts, max_length=max_length), probe_ref)
            sensitivity[name] = round(1.0 - float(cos.min()), 6)
        ranked = sorted(sensitivity, key=lambda n: -sensitivity[n])
        logger.info(
            "int8 sensitivity (worst-cosine drop): %s", ", ".join(f"{n} {sensitivity[n]:.4f}" for n in ranked[:6])
        )
        for k in INT8_KEEP_SCHEDULE:
            cand = trial(ranked[:k])
            if cand.worst > best.worst:
                best = cand
            if cand.worst >= target:
                break
    return _finish(best, dst, texts, min_cosine, sensitivity, search)


def _finish(
    best: Candidate,
    dst: Path,
    texts: Sequence[str],
    min_cosine: float,
    sensitivity: dict[str, float],
    search: list[dict[str, Any]],
) -> Int8Choice:
    if best.worst < min_cosine:
        tried = max((int(t["kept_fp32"]) for t in search), default=len(best.kept_fp32))
        raise RuntimeError(
            f"int8 ONNX parity {best.worst:.5f} < {min_cosine} even with up to {tried} MatMuls kept fp32 "
            f"({len(search)} candidates; the best keeps {len(best.kept_fp32)}; "
            f"worst text {texts[int(best.cosines.argmin())][:80]!r})"
        )
    shutil.move(str(best.path), str(dst))
    return Int8Choice(kept_fp32=best.kept_fp32, cosines=best.cosines, sensitivity=sensitivity, search=search)
