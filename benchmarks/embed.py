"""Encoder throughput and agreement: torch eager vs ONNX Runtime fp32 vs ONNX Runtime int8.

    python -m benchmarks.embed [--json] [--n 512] [--batch 32] [--threads 2] [--artifacts DIR]
    python -m benchmarks.embed --int8-study [--n 512] [--real Beauty Industrial Scientific]

All three run in one process on the same seeded product-like texts (``benchmarks/texts.py``),
the same thread count and the same batches: texts are sorted by token count and cut
into batches of ``--batch``; every batch goes through each engine's full path
(tokenize -> model -> mean pool -> L2) in turn, the order rotating from batch to
batch, so a noisy neighbour on a shared machine slows all three alike. Each path is
timed per batch and the best of ``--repeats`` rounds is kept. Cosines compare each
ONNX vector with the torch vector of the same text.

Without ``--artifacts`` the encoder is exported to a temporary folder first
(``training.encoder.export``; the export runs in a child process). With it, DIR
is an artifact set (``manifest.json``) or any folder holding ``encoder/encoder.onnx``,
``encoder/encoder.int8.onnx`` and ``encoder/tokenizer/``.

``--int8-study`` compares ways of *dynamic per-tensor* int8 quantization (worst and mean
cosine against torch); that scheme was replaced by batch-invariant row-wise int8, and
``python -m benchmarks.quantization`` compares the schemes (accuracy, batch invariance,
speed); ``--real`` adds seeded samples of catalog texts from the shared
datasets (``$RECSVC_DATA_DIR``, default ``../shared/data``): 200 per dataset, 100 for
Scientific.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from benchmarks.texts import product_texts
from service.core.manifest import EncoderSpec, Manifest

logger = logging.getLogger("benchmarks.embed")

Engine = Callable[[Sequence[str]], np.ndarray]


@dataclass
class EmbedBenchmark:
    n_texts: int
    batch: int
    threads: int
    torch_fp32_per_s: float
    onnx_fp32_per_s: float
    onnx_int8_per_s: float
    speedup_fp32: float
    speedup_int8: float
    cos_fp32_min: float
    cos_fp32_mean: float
    cos_int8_min: float
    cos_int8_mean: float


def _encoder_files(root: Path) -> tuple[EncoderSpec, Path | None]:
    """The encoder spec of ``root`` and the torch model folder it was exported from (None = base model)."""
    if (root / "manifest.json").is_file():
        spec = Manifest.read(root).encoder
    elif (root / "encoder" / "encoder.onnx").is_file():
        spec = EncoderSpec(
            base_model="",
            dim=384,
            max_length=128,
            pooling="mean",
            normalize=True,
            onnx_fp32="encoder/encoder.onnx",
            onnx_int8="encoder/encoder.int8.onnx",
            tokenizer_dir="encoder/tokenizer",
        )
    else:
        raise SystemExit(f"{root}: neither manifest.json nor encoder/encoder.onnx found")
    model_dir: Path | None = None
    info = root / "encoder" / "export_info.json"
    if info.is_file():
        candidate = Path(json.loads(info.read_text()).get("model_dir", ""))
        model_dir = candidate if candidate.is_dir() else None
    elif spec.base_model and Path(spec.base_model).is_dir():
        model_dir = Path(spec.base_model)
    return spec, model_dir


def _length_batches(texts: Sequence[str], tokenizer_dir: Path, max_length: int, batch: int) -> list[list[int]]:
    """Text indices in batches of similar token count (longest first), like every engine batches them."""
    from service.encoding.tokenize import TextTokenizer

    lengths = np.array([len(x) for x in TextTokenizer(tokenizer_dir, max_length).encode(texts)])
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + batch].tolist() for i in range(0, len(texts), batch)]


def run_benchmark(
    root: Path, *, n: int, batch: int, threads: int, repeats: int = 2, seed: int = 0, model_dir: Path | None = None
) -> EmbedBenchmark:
    import torch

    from service.encoding.onnx_encoder import OnnxEncoder
    from training.models.text_encoder import TextEncoder, encode_texts, load_tokenizer

    spec, exported_from = _encoder_files(root)
    model_dir = model_dir or exported_from
    torch.set_num_threads(threads)
    texts = product_texts(n, seed)
    tok_dir = root / spec.tokenizer_dir

    model = TextEncoder.from_pretrained(model_dir)
    hf_tokenizer = load_tokenizer(model_dir)
    fp32 = OnnxEncoder.from_manifest(root, spec, "fp32", "cpu", threads, batch_size=batch)
    int8 = OnnxEncoder.from_manifest(root, spec, "int8", "cpu", threads, batch_size=batch)

    def torch_engine(ts: Sequence[str]) -> np.ndarray:
        return encode_texts(model, hf_tokenizer, ts, batch_size=batch, max_length=spec.max_length)

    engines: dict[str, Engine] = {"torch": torch_engine, "fp32": fp32.encode, "int8": int8.encode}
    batches = _length_batches(texts, tok_dir, spec.max_length, batch)
    for fn in engines.values():  # warm-up: first-run allocations, lazy init
        fn([texts[i] for i in batches[len(batches) // 2]])

    vectors = {name: np.zeros((n, spec.dim), dtype=np.float32) for name in engines}
    best = {name: np.full(len(batches), np.inf) for name in engines}  # [n_batches] seconds
    names = list(engines)
    for r in range(repeats):
        for b, idx in enumerate(batches):
            chunk = [texts[i] for i in idx]
            shift = (b + r) % len(names)
            for name in names[shift:] + names[:shift]:
                t0 = time.perf_counter()
                out = engines[name](chunk)  # [b, H]
                best[name][b] = min(best[name][b], time.perf_counter() - t0)
                vectors[name][idx] = out
        logger.info("round %d/%d: %s", r + 1, repeats, ", ".join(f"{k} {n / v.sum():.1f}/s" for k, v in best.items()))

    per_s = {name: n / float(best[name].sum()) for name in engines}
    cos = {name: (vectors[name] * vectors["torch"]).sum(axis=1) for name in ("fp32", "int8")}  # [N] (unit rows)
    return EmbedBenchmark(
        n_texts=n,
        batch=batch,
        threads=threads,
        torch_fp32_per_s=round(per_s["torch"], 2),
        onnx_fp32_per_s=round(per_s["fp32"], 2),
        onnx_int8_per_s=round(per_s["int8"], 2),
        speedup_fp32=round(per_s["fp32"] / per_s["torch"], 3),
        speedup_int8=round(per_s["int8"] / per_s["torch"], 3),
        cos_fp32_min=round(float(cos["fp32"].min()), 6),
        cos_fp32_mean=round(float(cos["fp32"].mean()), 6),
        cos_int8_min=round(float(cos["int8"].min()), 6),
        cos_int8_mean=round(float(cos["int8"].mean()), 6),
    )


# ----------------------------------------------------------------------------- int8 study
class Int8Variant(NamedTuple):
    label: str
    fused: bool
    op_types: tuple[str, ...] | None  # None = quantize_dynamic's default (every supported op)
    per_channel: bool
    reduce_range: bool = False
    keep_fp32: tuple[str, ...] = ()  # MatMul name suffixes


_KEEP4 = (
    "layer.0/output/dense/MatMul",
    "layer.0/attention/output/dense/MatMul",
    "layer.1/output/dense/MatMul",
    "layer.2/output/dense/MatMul",
)


def int8_variants() -> list[Int8Variant]:
    from training.encoder.int8_search import DEFAULT_KEEP_FP32

    mm, mm_att = ("MatMul",), ("MatMul", "Attention")
    return [
        Int8Variant("plain graph, quantize_dynamic defaults", False, None, False),
        Int8Variant("fused graph, MatMul + Attention, per-tensor", True, mm_att, False),
        Int8Variant("plain graph, MatMul only, per-channel", False, mm, True),
        Int8Variant("fused graph, MatMul + Attention, per-channel", True, mm_att, True),
        Int8Variant("fused, MatMul + Attention, per-channel, reduce_range", True, mm_att, True, True),
        Int8Variant("fused graph, MatMul only, per-channel", True, mm, True),
        Int8Variant("  + 4 sensitive MatMuls fp32, Q/K/V quantized", True, mm_att, True, False, _KEEP4),
        Int8Variant("  + 4 sensitive MatMuls fp32, attention fp32", True, mm, True, False, _KEEP4),
        Int8Variant("  + DEFAULT_KEEP_FP32 (export default)", True, mm, True, False, DEFAULT_KEEP_FP32),
    ]


def real_texts(names: Sequence[str], data_dir: Path, seed: int = 0) -> list[str]:
    """Seeded samples of catalog item texts (200 per dataset, 100 for the small Scientific)."""
    from service.core.items import item_from_dict, item_text

    out: list[str] = []
    for name in names:
        lines = (data_dir / name / "items.jsonl").read_text(encoding="utf-8").splitlines()
        k = 100 if name == "Scientific" else 200
        idx = np.random.default_rng(seed).choice(len(lines), size=min(k, len(lines)), replace=False)
        out += [item_text(item_from_dict(json.loads(lines[i]), allow_empty_title=True)) for i in idx]
    return out


def int8_study(
    root: Path, texts: Sequence[str], *, threads: int, model_dir: Path | None = None
) -> list[dict[str, Any]]:
    """Worst / mean cosine against torch of every :func:`int8_variants` entry on ``texts``."""
    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from service.encoding.onnx_encoder import OnnxEncoder
    from training.encoder.export import quiet_root_logger
    from training.encoder.quantize import fuse_for_cpu, matmul_nodes
    from training.models.text_encoder import TextEncoder, encode_texts, load_tokenizer

    spec, exported_from = _encoder_files(root)
    model_dir = model_dir or exported_from
    torch.set_num_threads(threads)
    reference = encode_texts(TextEncoder.from_pretrained(model_dir), load_tokenizer(model_dir), texts, batch_size=32)
    plain = root / spec.onnx_fp32
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="recsvc-int8-study-") as tmp:
        fused = Path(tmp) / "fused.onnx"
        with quiet_root_logger():
            fuse_for_cpu(plain, fused, num_heads=12, hidden_size=spec.dim)
        for i, v in enumerate(int8_variants()):
            src = fused if v.fused else plain
            names = matmul_nodes(src)
            keep = [n for suffix in v.keep_fp32 for n in names if n.endswith("/" + suffix)]
            dst = Path(tmp) / f"variant{i}.onnx"
            with quiet_root_logger():
                quantize_dynamic(
                    str(src),
                    str(dst),
                    op_types_to_quantize=list(v.op_types) if v.op_types else None,
                    per_channel=v.per_channel,
                    reduce_range=v.reduce_range,
                    weight_type=QuantType.QInt8,
                    nodes_to_exclude=keep,
                    extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
                )
            enc = OnnxEncoder(dst, root / spec.tokenizer_dir, max_length=spec.max_length, device="cpu", threads=threads)
            cos = (enc.encode(texts) * reference).sum(axis=1)  # [N]
            rows.append({"variant": v.label, "min": round(float(cos.min()), 4), "mean": round(float(cos.mean()), 4)})
            logger.info("%-55s min %.4f mean %.4f", v.label, cos.min(), cos.mean())
    return rows


def _table(res: EmbedBenchmark) -> str:
    rows = [
        ("torch eager fp32", res.torch_fp32_per_s, 1.0, None, None),
        ("onnxruntime fp32", res.onnx_fp32_per_s, res.speedup_fp32, res.cos_fp32_min, res.cos_fp32_mean),
        ("onnxruntime int8", res.onnx_int8_per_s, res.speedup_int8, res.cos_int8_min, res.cos_int8_mean),
    ]
    lines = [
        f"{res.n_texts} product-like texts, batch {res.batch}, {res.threads} threads (cosine vs torch)",
        f"{'engine':<18} {'texts/s':>9} {'vs torch':>9} {'min cos':>9} {'mean cos':>9}",
    ]
    for name, per_s, ratio, cmin, cmean in rows:
        c1 = f"{cmin:.5f}" if cmin is not None else "-"
        c2 = f"{cmean:.5f}" if cmean is not None else "-"
        lines.append(f"{name:<18} {per_s:>9.1f} {ratio:>8.2f}x {c1:>9} {c2:>9}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="torch vs ONNX fp32 vs ONNX int8 text encoder benchmark")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--n", type=int, default=512, help="number of texts")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="timing rounds; the best per batch is kept")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--artifacts", type=Path, default=None, help="artifact set or folder with encoder/")
    parser.add_argument("--model-dir", type=Path, default=None, help="torch model (default: what was exported)")
    parser.add_argument("--int8-study", action="store_true", help="compare ways of quantizing to int8 (cosines only)")
    parser.add_argument("--real", nargs="*", default=[], help="shared datasets whose item texts join the study")
    args = parser.parse_args(argv)
    if args.n < 1 or args.batch < 1 or args.threads < 1 or args.repeats < 1:
        parser.error("--n, --batch, --threads and --repeats must be >= 1")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    kwargs: dict[str, Any] = {
        "n": args.n,
        "batch": args.batch,
        "threads": args.threads,
        "repeats": args.repeats,
        "seed": args.seed,
        "model_dir": args.model_dir,
    }
    with contextlib.ExitStack() as stack:
        root = args.artifacts
        if root is None:
            from training.config import EncoderExportConfig
            from training.encoder.export import export_encoder

            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="recsvc-bench-")))
            t0 = time.perf_counter()
            export_encoder(root, EncoderExportConfig(model_dir=str(args.model_dir) if args.model_dir else None))
            logger.info("exported the encoder in %.1fs", time.perf_counter() - t0)
        if args.int8_study:
            data_dir = Path(os.environ.get("RECSVC_DATA_DIR", "../shared/data"))
            texts = product_texts(args.n, args.seed) + real_texts(args.real, data_dir, args.seed)
            rows = int8_study(root, texts, threads=args.threads, model_dir=args.model_dir)
            if args.json:
                print(json.dumps({"n_texts": len(texts), "variants": rows}))
            else:
                print(f"int8 variants on {len(texts)} texts (cosine vs torch)")
                print("\n".join(f"{r['variant']:<58} {r['min']:.3f}  {r['mean']:.3f}" for r in rows))
            return
        res = run_benchmark(root, **kwargs)
    if args.json:
        print(json.dumps(res.__dict__))
    else:
        print(_table(res))


if __name__ == "__main__":
    main()
