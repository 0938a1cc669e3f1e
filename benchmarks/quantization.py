"""int8 schemes for the ONNX encoder: accuracy, batch invariance and speed, one table.

    python -m benchmarks.quantization [--quick] [--json] [--artifacts DIR] [--data-dir DIR]

Every scheme is built from the same fp32 export, fused by ``training.encoder.quantize.fuse_for_cpu``
(attention as the ``Attention`` op, whose packed QKV weight no quantizer reaches, or as
``MultiHeadAttention`` fed by three MatMuls), and measured on real item texts: seeded
samples of ``Beauty`` titles (short keyword names) and ``Industrial`` item texts (title +
description, mostly past 128 tokens), read from ``--data-dir`` (default ``$RECSVC_DATA_DIR``
or ``../shared/data``); never copied anywhere.

- ``min cos`` / ``mean cos``: each text's vector against a fresh torch model (this process
  never runs ``torch.onnx.export``; the fp32 ONNX is exported in a child process).
- ``alone/batched``: worst cosine of a text alone vs inside three batches (next to the
  longest text, after the shortest, among random others), ``training.encoder.quantize.batch_invariance``;
  ``max |diff|`` is the largest element difference (0 = bit-identical).
- speed: texts/s of the session alone (tokenized beforehand) on batches of ``--batch`` Beauty
  titles, of ``--batch`` long texts (128 tokens), and of single titles; schemes alternate
  in every round (order reversed every other round), the median round counts, and the
  ratio is against the former dynamic int8 file of the same run. The machine is shared:
  compare ratios, and read the load averages printed beside them.

Static QDQ schemes calibrate on a separate seeded sample of the same catalogs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.core.items import item_from_dict, item_text
from training.encoder.quantize import (
    RowwiseInt8,
    batch_invariance,
    embed_batch,
    fuse_for_cpu,
    matmul_nodes,
    quantize_dynamic_per_tensor,
    quantize_rowwise,
    quantize_static_qdq,
    session,
)

logger = logging.getLogger("benchmarks.quantization")

# The former default: dynamic int8 with these 6 MatMuls kept fp32 (name suffixes).
FORMER_KEEP_FP32 = (
    "layer.4/intermediate/dense/MatMul",
    "layer.0/output/dense/MatMul",
    "layer.3/intermediate/dense/MatMul",
    "layer.2/output/dense/MatMul",
    "layer.0/attention/output/dense/MatMul",
    "layer.2/intermediate/dense/MatMul",
)
BASELINE = "dynamic per-tensor, 6 fp32 (former)"
# "NBits": MatMulNBits, 8-bit weights in blocks of bN along K, accuracy_level 4 (int8 compute, activations
# quantized per row and block) unless marked fp32 compute (accuracy_level 1: weights dequantized per call).


@dataclass(frozen=True)
class Scheme:
    label: str
    build: Callable[[Path, Path], None] | None  # (fused fp32, dst); None = the fused fp32 graph itself
    graph: str = "attention"  # "attention": Attention op (packed QKV, fp32); "mha": Q/K/V MatMuls + MultiHeadAttention
    quick: bool = True  # part of --quick


@dataclass
class Row:
    scheme: str
    min_cos: float
    mean_cos: float
    p1_cos: float
    inv_min_cos: float
    inv_max_diff: float
    per_s: dict[str, float]
    vs_former: dict[str, float]
    vs_fp32: dict[str, float]


def real_texts(data_dir: Path, n_per: int, seed: int) -> tuple[list[str], list[str]]:
    """Seeded samples: Beauty item texts (titles) and Industrial item texts (with descriptions)."""
    out: list[list[str]] = []
    for name in ("Beauty", "Industrial"):
        path = data_dir / name / "items.jsonl"
        if not path.is_file():
            raise SystemExit(f"{path} not found: pass --data-dir (the shared datasets folder)")
        lines = path.read_text(encoding="utf-8").splitlines()
        idx = np.random.default_rng(seed).choice(len(lines), size=min(n_per, len(lines)), replace=False)
        out.append([item_text(item_from_dict(json.loads(lines[i]), allow_empty_title=True)) for i in idx])
    return out[0], out[1]


def schemes(calib: Sequence[dict[str, np.ndarray]]) -> list[Scheme]:
    def keep(path: Path, suffixes: Sequence[str]) -> list[str]:
        return [n for s in suffixes for n in matmul_nodes(path) if n.endswith("/" + s)]

    def rowwise(block: int, level: int) -> Callable[[Path, Path], None]:
        return lambda src, dst: quantize_rowwise(src, dst, scheme=RowwiseInt8(block_size=block, accuracy_level=level))

    def static(method: str, k: Sequence[str]) -> Callable[[Path, Path], None]:
        return lambda src, dst: quantize_static_qdq(src, dst, calib, keep(src, k), method=method)

    return [
        Scheme("fp32, Attention fused", None),
        Scheme("fp32, MultiHeadAttention fused", None, "mha", quick=False),
        Scheme(BASELINE, lambda s, d: quantize_dynamic_per_tensor(s, d, keep(s, FORMER_KEEP_FP32))),
        Scheme("dynamic per-tensor, all int8", lambda s, d: quantize_dynamic_per_tensor(s, d), quick=False),
        Scheme("static QDQ MinMax, 6 fp32", static("MinMax", FORMER_KEEP_FP32)),
        Scheme("static QDQ Percentile, 6 fp32", static("Percentile", FORMER_KEEP_FP32), quick=False),
        Scheme("row-wise NBits b32 (QKV fp32)", rowwise(32, 4), quick=False),
        Scheme("row-wise NBits b64 (QKV fp32)", rowwise(64, 4)),
        Scheme("row-wise NBits b128 (QKV fp32)", rowwise(128, 4), quick=False),
        Scheme("row-wise NBits b32, QKV int8", rowwise(32, 4), "mha", quick=False),
        Scheme("row-wise NBits b64, QKV int8 (served)", rowwise(64, 4), "mha"),
        Scheme("row-wise NBits b128, QKV int8", rowwise(128, 4), "mha"),
        Scheme("weight-only NBits b32 (fp32 compute)", rowwise(32, 1), quick=False),
    ]


def _quality(
    sessions: dict[str, Any],
    tokenizer: Any,
    texts: list[str],
    reference: np.ndarray,
    args: argparse.Namespace,
    max_length: int,
) -> dict[str, tuple[float, float, float, float, float]]:
    """Per scheme: min / mean / 1st-percentile cosine to the torch reference, and the alone-vs-batched
    minimum cosine and largest absolute difference."""
    quality: dict[str, tuple[float, float, float, float, float]] = {}
    for label, sess in sessions.items():
        order = np.argsort([-len(t) for t in texts], kind="stable")
        vecs = np.zeros_like(reference)
        for start in range(0, len(texts), args.batch):
            idx = order[start : start + args.batch]
            vecs[idx] = embed_batch(sess, tokenizer, [texts[i] for i in idx], max_length=max_length)
        cos = (vecs * reference).sum(axis=1)  # [N]
        inv = batch_invariance(sess, tokenizer, texts, max_length=max_length, n_probe=24 if args.quick else 48)
        quality[label] = (
            float(cos.min()),
            float(cos.mean()),
            float(np.percentile(cos, 1)),
            inv.min_cosine,
            inv.max_abs_diff,
        )
        logger.info("%-48s min cos %.4f, alone/batched %.6f", label, cos.min(), inv.min_cosine)
    return quality


def _timed_rounds(
    sessions: dict[str, Any], workloads: dict[str, list[dict[str, np.ndarray]]], rounds: int
) -> dict[tuple[str, str], list[float]]:
    """Seconds per (scheme, workload), the schemes alternating in order each round (round 0 warms up)."""
    times: dict[tuple[str, str], list[float]] = {(lb, w): [] for lb in sessions for w in workloads}
    labels = list(sessions)
    for r in range(rounds + 1):
        for label in labels if r % 2 == 0 else labels[::-1]:
            for w, feeds in workloads.items():
                t0 = time.perf_counter()
                for f in feeds:
                    sessions[label].run(["last_hidden_state"], f)
                if r > 0:
                    times[(label, w)].append(time.perf_counter() - t0)
    return times


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from training.encoder.export import export_onnx_subprocess
    from training.models.text_encoder import TextEncoder, encode_texts, load_tokenizer

    torch.set_num_threads(args.threads)
    n_per = 100 if args.quick else 250
    titles, longs = real_texts(args.data_dir, n_per, args.seed)
    calib_titles, calib_longs = real_texts(args.data_dir, 64, args.seed + 1)
    texts = titles + longs
    model_dir: Path | None = None  # the torch model the fp32 file came from (None = the base model)
    info = args.artifacts / "encoder" / "export_info.json" if args.artifacts is not None else None
    if info is not None and info.is_file():
        candidate = Path(json.loads(info.read_text()).get("model_dir", ""))
        model_dir = candidate if candidate.is_dir() else None
    tokenizer = load_tokenizer(model_dir)
    max_length = 128

    def feed(ts: Sequence[str], padding: str | bool = True) -> dict[str, np.ndarray]:
        enc = tokenizer(list(ts), padding=padding, truncation=True, max_length=max_length, return_tensors="np")
        return {
            "input_ids": enc["input_ids"].astype(np.int64),
            "attention_mask": enc["attention_mask"].astype(np.int64),
        }

    calib_all = calib_titles + calib_longs
    # Calibration batches padded to max_length: the histogram calibrators (Percentile, Entropy) need one shape.
    calib = [feed(calib_all[i : i + 16], "max_length") for i in range(0, len(calib_all), 16)]
    reference = encode_texts(TextEncoder.from_pretrained(model_dir), tokenizer, texts, batch_size=32)  # [N, H]

    rng = np.random.default_rng(args.seed)
    long_only = [t for t in longs if len(tokenizer(t)["input_ids"]) >= max_length]
    workloads = {
        "titles": [feed(list(rng.choice(titles, args.batch))) for _ in range(4)],
        "long": [feed(list(rng.choice(long_only, args.batch))) for _ in range(2)],
        "single": [feed([t]) for t in rng.choice(titles, 16)],
    }
    load = {"start": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory(prefix="recsvc-quant-") as tmp_dir:
        tmp = Path(tmp_dir)
        if args.artifacts is not None:
            plain = args.artifacts / "encoder" / "encoder.onnx"
        else:
            plain = tmp / "encoder.onnx"
            export_onnx_subprocess(None, plain, opset=17)  # the base model, in a child process
        graphs = {"attention": tmp / "fused.onnx", "mha": tmp / "fused_mha.onnx"}
        for kind, path in graphs.items():
            fuse_for_cpu(plain, path, num_heads=12, hidden_size=384, separate_qkv=kind == "mha")
        chosen = [s for s in schemes(calib) if (s.quick or not args.quick)]
        files: dict[str, Path] = {}
        for i, s in enumerate(chosen):
            t0 = time.perf_counter()
            if s.build is None:
                files[s.label] = graphs[s.graph]
            else:
                files[s.label] = tmp / f"scheme{i}.onnx"
                s.build(graphs[s.graph], files[s.label])
            logger.info("built %-48s in %.1fs", s.label, time.perf_counter() - t0)

        sessions = {label: session(path, args.threads) for label, path in files.items()}
        quality = _quality(sessions, tokenizer, texts, reference, args, max_length)
        labels = list(sessions)
        times = _timed_rounds(sessions, workloads, args.rounds)
    load["end"] = [round(x, 2) for x in os.getloadavg()]

    n_texts = {w: sum(len(f["input_ids"]) for f in feeds) for w, feeds in workloads.items()}
    per_s = {k: n_texts[k[1]] / float(np.median(v)) for k, v in times.items()}
    fp32_label = chosen[0].label
    rows = []
    for label in labels:
        q = quality[label]
        rows.append(
            Row(
                scheme=label,
                min_cos=round(q[0], 4),
                mean_cos=round(q[1], 4),
                p1_cos=round(q[2], 4),
                inv_min_cos=round(q[3], 6),
                inv_max_diff=float(f"{q[4]:.2g}"),
                per_s={w: round(per_s[(label, w)], 1) for w in workloads},
                vs_former={w: round(per_s[(label, w)] / per_s[(BASELINE, w)], 2) for w in workloads},
                vs_fp32={w: round(per_s[(label, w)] / per_s[(fp32_label, w)], 2) for w in workloads},
            )
        )
    return {
        "n_texts": len(texts),
        "batch": args.batch,
        "threads": args.threads,
        "rounds": args.rounds,
        "loadavg": load,
        "rows": [r.__dict__ for r in rows],
    }


def table(res: dict[str, Any]) -> str:
    lines = [
        f"{res['n_texts']} real item texts (Beauty titles + Industrial descriptions), batch {res['batch']}, "
        f"{res['threads']} threads, median of {res['rounds']} alternating rounds; "
        f"load average {res['loadavg']['start']} -> {res['loadavg']['end']}",
        f"{'scheme':<50} {'min cos':>7} {'mean':>6} {'alone/batched':>13} {'max|diff|':>9}  "
        f"{'titles/s':>8} {'long/s':>7} {'single/s':>8}  {'vs former int8 (titles/long/single)':>36}",
    ]
    for r in res["rows"]:
        ps, vs = r["per_s"], r["vs_former"]
        lines.append(
            f"{r['scheme']:<50} {r['min_cos']:>7.4f} {r['mean_cos']:>6.4f} {r['inv_min_cos']:>13.6f} "
            f"{r['inv_max_diff']:>9.2g}  {ps['titles']:>8.1f} {ps['long']:>7.1f} {ps['single']:>8.1f}  "
            f"{vs['titles']:>10.2f}x {vs['long']:>6.2f}x {vs['single']:>6.2f}x"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="int8 schemes of the ONNX encoder: accuracy, invariance, speed")
    parser.add_argument("--quick", action="store_true", help="200 texts, fewer schemes and rounds")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--artifacts", type=Path, default=None, help="artifact set holding encoder/encoder.onnx")
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("RECSVC_DATA_DIR", "../shared/data")), help="datasets"
    )
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=0, help="timing rounds (default 3 with --quick, else 7)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (3 if args.quick else 7)
    if args.batch < 1 or args.threads < 1:
        parser.error("--batch and --threads must be >= 1")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    res = run(args)
    print(json.dumps(res) if args.json else table(res))


if __name__ == "__main__":
    main()
