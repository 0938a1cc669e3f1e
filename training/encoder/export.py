"""Export the frozen text encoder to ONNX (fp32 + int8), gate on parity, record golden vectors.

Writes, under ``artifact_root``::

    encoder/encoder.onnx          fp32, plain ONNX ops (any execution provider fuses it at load time)
    encoder/encoder.int8.onnx     row-wise int8 (CPU variant, batch-invariant), recipe below
    encoder/tokenizer/            tokenizer.json (+ HF files), truncation/padding set to the export's settings
    encoder/export_info.json      how the files were made: exporter, opset, int8 recipe, parity, timings

Graph contract: inputs ``input_ids`` and ``attention_mask`` (int64, [B, L], both axes
dynamic), output ``last_hidden_state`` [B, L, H]. ``token_type_ids`` is not an input:
a single-segment encoder only ever sees zeros, so the graph builds them. Pooling and
normalisation stay outside the graph, in ``service.core.pooling`` (one definition).

Parity is measured against a *fresh* torch model in this process. The ONNX export
itself runs in a child process (``python -m training.jobs.export_encoder torch-onnx``):
the TorchScript exporter leaves the Hugging Face model it traced giving wrong
outputs (cosine .88-.93, see shared NOTES.md), so this process never exports.

int8 must give a text the same vector whatever it is batched with (issue 25). The former
``quantize_dynamic`` file took one activation scale per tensor, over the whole batch and its
padding: cosine .9957 between a text alone and the same text batched. Measured on 200 real
item texts (100 Beauty titles, 100 Industrial descriptions), 2 threads, batch 32, texts/s as a
ratio to that former file in the same run, median of 7 alternating rounds, load average 2.7 -> 2.6
(``python -m benchmarks.quantization --quick --rounds 7``; onnxruntime's default spinning):

===============================================  =======  =============  ======  =====  ======
scheme                                           min cos  alone/batched  titles  long   single
===============================================  =======  =============  ======  =====  ======
fp32, Attention fused                            1.0000   1.000000 (bit)   .85    .75    .83
dynamic per-tensor, 6 MatMuls fp32 (former)       .9955    .995730        1.00   1.00   1.00
static QDQ MinMax (fixed scales), 6 fp32          .9417   1.000000 (bit)   .95    .95   1.04
row-wise NBits b64, QKV fp32 (Attention op)       .9996   1.000000 (bit)   .84    .92   1.04
row-wise NBits b64, Q/K/V int8  <- default        .9991   1.000000 (bit)   .90    .89    .98
row-wise NBits b128, Q/K/V int8                   .9985    .999733        1.05    .98   1.23
===============================================  =======  =============  ======  =====  ======

With spinning off (``session.intra_op.allow_spinning=0``, load 3) the default ran 1.02 / 1.00 /
1.02x the former file. Blocks of 128 are faster but onnxruntime's kernel gives a lone text
(batch of 1) other codes than a batch of 2 or more (max |diff| .0037): not invariant.

So the int8 file is made in three steps, all measured at every export:

1. fuse the fp32 graph with ``onnxruntime.transformers.optimizer`` (bert: EmbedLayerNormalization,
   SkipLayerNormalization, BiasGelu, and attention as MultiHeadAttention fed by separate Q, K, V
   MatMuls, so they are quantized too: the fused Attention op keeps its packed QKV weight fp32);
2. every MatMul -> ``MatMulNBits`` with 8-bit symmetric weights in blocks of 64 along K and
   ``accuracy_level`` 4: onnxruntime quantizes each activation row per block of 64 at run time,
   so a row's codes depend on that row alone (batch-invariant by construction, no calibration
   set; :mod:`training.encoder.quantize`);
3. gate: worst cosine against torch on the parity set (golden + :data:`~training.encoder.parity.PARITY_TEXTS` + a
   catalog sample) >= ``int8_min_cosine`` (if not, the most sensitive MatMuls are kept fp32,
   fewest first), and batch invariance (each of :data:`INVARIANCE_PROBES` texts alone vs in
   three batches) >= ``int8_min_batch_cosine``; the export fails otherwise. The scheme and the
   measured invariance go to ``export_info.json`` and the manifest (``EncoderSpec.int8_scheme``).

Short texts are int8's weak spot (mean of 3-5 token states, with [CLS]/[SEP]
outliers): the parity set includes them on purpose. Blank text is not included: the
service rejects it. Serve fp32 on CUDA: the int8 file is a CPU variant.

The parity set and ONNX vectors live in :mod:`training.encoder.parity`, the int8 search
(which MatMuls stay fp32) in :mod:`training.encoder.int8_search`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from service.core.manifest import EncoderSpec, GoldenVector
from training.config import BASE_MODEL_NAME, EncoderExportConfig
from training.encoder.int8_search import Int8Choice, choose_int8
from training.encoder.parity import DEFAULT_GOLDEN_TEXTS, onnx_vectors, parity_set, row_cosines
from training.encoder.quantize import (
    INPUT_NAMES,
    OUTPUT_NAME,
    ROWWISE_SCHEME,
    Invariance,
    batch_invariance,
    fuse_for_cpu,
    session,
)

logger = logging.getLogger(__name__)

ENCODER_DIR = "encoder"
FP32_NAME = "encoder.onnx"
INT8_NAME = "encoder.int8.onnx"
TOKENIZER_DIR = "tokenizer"
INFO_NAME = "export_info.json"
# Texts probed alone vs batched at export (each in 3 batches), see quantize.batch_invariance.
INVARIANCE_PROBES = 24


@dataclass
class ExportInfo:
    """Provenance written to ``encoder/export_info.json`` (listed in the manifest like every file)."""

    model_dir: str
    exporter: str
    opset: int
    max_length: int
    int8_settings: dict[str, Any]
    int8_kept_fp32: list[str]
    int8_sensitivity: dict[str, float]
    int8_search: list[dict[str, Any]]
    fused_ops: dict[str, int]
    parity: dict[str, float]
    parity_mean: dict[str, float]
    n_parity_texts: int
    seconds: dict[str, float]
    versions: dict[str, str] = field(default_factory=dict)


# ----------------------------------------------------------------------------- torch -> onnx (child process)
def torch_to_onnx(model_dir: Path | None, out: Path, *, opset: int) -> None:
    """Export ``last_hidden_state`` of the HF model at ``model_dir`` to ``out``.

    Run this only in a process that does not use the model afterwards (see module doc);
    :func:`export_encoder` calls it through :func:`export_onnx_subprocess`.
    """
    import warnings

    import torch
    from torch import Tensor, nn
    from transformers import AutoModel

    from training.models.text_encoder import base_model_dir

    path = model_dir if model_dir is not None else base_model_dir()
    # Eager attention: its graph is the pattern onnxruntime's BERT fusion recognises
    # (the SDPA export does not fuse into Attention). Outputs are the same.
    backbone = AutoModel.from_pretrained(str(path), local_files_only=True, attn_implementation="eager").eval()

    class HiddenStates(nn.Module):
        def __init__(self, backbone: nn.Module) -> None:
            super().__init__()
            self.backbone = backbone

        def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
            out = self.backbone(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids)
            )
            return out.last_hidden_state  # [B, L, H]

    # Trace with a padded row so the mask path is general.
    ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 102], [101, 7592, 102, 0, 0, 0]], dtype=torch.long)  # [2, 6]
    mask = (ids != 0).long()  # [2, 6]
    axes = {0: "batch", 1: "sequence"}
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            HiddenStates(backbone),
            (ids, mask),
            str(out),
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAMES[0]: axes, INPUT_NAMES[1]: axes, OUTPUT_NAME: axes},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )


def export_onnx_subprocess(model_dir: Path | None, out: Path, *, opset: int, timeout_s: float = 600) -> None:
    """Run :func:`torch_to_onnx` in a fresh interpreter; raise with its stderr on failure."""
    cmd = [sys.executable, "-m", "training.jobs.export_encoder", "torch-onnx", "--out", str(out), "--opset", str(opset)]
    if model_dir is not None:
        cmd += ["--model-dir", str(model_dir)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    repo_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = repo_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s, check=False)
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(f"ONNX export failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")


@contextlib.contextmanager
def quiet_root_logger() -> Iterator[None]:
    """onnxruntime.quantization logs per tensor (and a pre-processing hint) on the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def _versions() -> dict[str, str]:
    import onnxruntime
    import torch
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


# ----------------------------------------------------------------------------- job
class _Reference(NamedTuple):
    """Torch vectors of the parity set from a fresh model, and the model's shape."""

    vectors: np.ndarray  # [N, H]
    golden: np.ndarray  # [G, H]
    num_heads: int
    hidden: int


def _torch_reference(
    model_dir: Path | None, tokenizer: Any, texts: list[str], golden_list: list[str], max_length: int
) -> _Reference:
    """Reference vectors from a fresh torch model (this process never exported)."""
    from training.models.text_encoder import TextEncoder, encode_texts

    model = TextEncoder.from_pretrained(model_dir)
    reference = encode_texts(model, tokenizer, texts, batch_size=32, max_length=max_length)  # [N, H]
    golden_vecs = reference[[texts.index(t) for t in golden_list]]  # [G, H]
    config = model.config
    return _Reference(reference, golden_vecs, int(config.num_attention_heads), int(config.hidden_size))


def _check_fp32(
    fp32_path: Path, tokenizer: Any, texts: list[str], reference: np.ndarray, cfg: EncoderExportConfig
) -> np.ndarray:
    """Cosines [N] of the fp32 file against torch; raises when the worst is below ``cfg.fp32_min_cosine``."""
    cos_fp32 = row_cosines(onnx_vectors(fp32_path, tokenizer, texts, max_length=cfg.max_length), reference)
    fp32_min = float(cos_fp32.min())
    logger.info("fp32 parity: min cosine %.6f, mean %.6f", fp32_min, float(cos_fp32.mean()))
    if fp32_min < cfg.fp32_min_cosine:
        worst = texts[int(cos_fp32.argmin())]
        raise RuntimeError(f"fp32 ONNX parity {fp32_min:.5f} < {cfg.fp32_min_cosine} (worst text {worst[:80]!r})")
    return cos_fp32


def _make_int8(
    fp32_path: Path,
    int8_path: Path,
    tokenizer: Any,
    texts: list[str],
    ref: _Reference,
    cfg: EncoderExportConfig,
) -> tuple[dict[str, int], Int8Choice]:
    """Fuse the fp32 graph, then quantize with the fewest sensitive MatMuls kept fp32 that meet the bar."""
    with tempfile.TemporaryDirectory(prefix="recsvc-export-") as tmp:
        fused_path = Path(tmp) / "encoder.fused.onnx"
        with quiet_root_logger():
            fused_ops = fuse_for_cpu(
                fp32_path,
                fused_path,
                num_heads=ref.num_heads,
                hidden_size=ref.hidden,
                separate_qkv=ROWWISE_SCHEME.separate_qkv,
            )
        logger.info("fused graph: %s", ", ".join(f"{k} x{v}" for k, v in sorted(fused_ops.items())))
        choice = choose_int8(
            fused_path,
            int8_path,
            tokenizer,
            texts,
            ref.vectors,
            max_length=cfg.max_length,
            min_cosine=cfg.int8_min_cosine,
            work_dir=Path(tmp),
        )
    return fused_ops, choice


def _check_invariance(int8_path: Path, tokenizer: Any, texts: list[str], cfg: EncoderExportConfig) -> Invariance:
    """A text alone vs next to longer / shorter / random batch-mates; removes the int8 file and raises below the bar."""
    invariance = batch_invariance(
        session(int8_path), tokenizer, texts, max_length=cfg.max_length, n_probe=INVARIANCE_PROBES
    )
    logger.info(
        "int8 batch invariance: min cosine %.7f, max abs diff %.2e (%d texts in %d batches)",
        invariance.min_cosine,
        invariance.max_abs_diff,
        invariance.n_texts,
        invariance.n_batches,
    )
    if invariance.min_cosine < cfg.int8_min_batch_cosine:
        int8_path.unlink(missing_ok=True)
        raise RuntimeError(
            f"int8 ONNX is not batch-invariant: cosine {invariance.min_cosine:.6f} < {cfg.int8_min_batch_cosine} "
            f"between a text alone and batched (worst text {invariance.worst_text[:80]!r})"
        )
    return invariance


def export_encoder(
    artifact_root: Path,
    cfg: EncoderExportConfig,
    golden_texts: Sequence[str] | None = None,
    *,
    parity_texts: Sequence[str] | None = None,
) -> tuple[EncoderSpec, list[GoldenVector]]:
    """Write ONNX fp32 + int8 + tokenizer under ``artifact_root/encoder``; check parity; make golden vectors.

    ``golden_texts`` default to the first ``cfg.n_golden`` of :data:`DEFAULT_GOLDEN_TEXTS`.
    ``parity_texts`` are added to the built-in parity set (golden + ``PARITY_TEXTS`` +
    a catalog sample, :func:`training.encoder.parity.parity_set`). Raises ``RuntimeError`` if a
    variant's worst cosine against the torch reference is below ``cfg.fp32_min_cosine`` /
    ``cfg.int8_min_cosine``.
    """
    from training.models.text_encoder import base_model_dir, load_tokenizer

    t_start = time.perf_counter()
    seconds: dict[str, float] = {}
    model_dir = Path(cfg.model_dir) if cfg.model_dir else None
    src_dir = model_dir if model_dir is not None else base_model_dir()
    enc_dir = artifact_root / ENCODER_DIR
    enc_dir.mkdir(parents=True, exist_ok=True)
    fp32_path = enc_dir / FP32_NAME
    int8_path = enc_dir / INT8_NAME
    tok_dir = enc_dir / TOKENIZER_DIR

    golden_list = list(golden_texts) if golden_texts is not None else list(DEFAULT_GOLDEN_TEXTS[: cfg.n_golden])
    texts = parity_set(golden_list, artifact_root, parity_texts or ())

    # 1. fp32 ONNX, in a child process.
    t0 = time.perf_counter()
    logger.info("exporting %s to ONNX (opset %d) in a child process ...", src_dir, cfg.opset)
    export_onnx_subprocess(model_dir, fp32_path, opset=cfg.opset)
    seconds["onnx_export"] = time.perf_counter() - t0

    # 2. tokenizer, with this export's truncation and batch-longest padding written into tokenizer.json.
    tokenizer = load_tokenizer(model_dir)
    tokenizer.save_pretrained(str(tok_dir))
    _normalize_tokenizer_json(tok_dir / "tokenizer.json", cfg.max_length)

    # 3. reference vectors from a fresh torch model (this process never exported).
    t0 = time.perf_counter()
    ref = _torch_reference(model_dir, tokenizer, texts, golden_list, cfg.max_length)
    seconds["torch_reference"] = time.perf_counter() - t0
    logger.info("torch reference: %d parity texts, %d golden texts", len(texts), len(golden_list))

    # 4. fp32 parity.
    t0 = time.perf_counter()
    cos_fp32 = _check_fp32(fp32_path, tokenizer, texts, ref.vectors, cfg)
    seconds["fp32_parity"] = time.perf_counter() - t0

    # 5. int8: fuse, then quantize with the fewest sensitive MatMuls kept fp32 that meet the bar.
    t0 = time.perf_counter()
    fused_ops, choice = _make_int8(fp32_path, int8_path, tokenizer, texts, ref, cfg)
    seconds["int8"] = time.perf_counter() - t0
    cos_int8 = choice.cosines
    parity = {"fp32": round(float(cos_fp32.min()), 6), "int8": round(float(cos_int8.min()), 6)}

    # 6. int8 batch invariance: a text alone vs next to longer / shorter / random batch-mates.
    t0 = time.perf_counter()
    invariance = _check_invariance(int8_path, tokenizer, texts, cfg)
    seconds["int8_invariance"] = time.perf_counter() - t0
    int8_scheme = {
        **ROWWISE_SCHEME.to_dict(),
        "graph": "onnxruntime.transformers BERT fusion (Attention, SkipLayerNormalization, BiasGelu) before int8",
        "kept_fp32": choice.kept_fp32,
        "batch_invariance": invariance.to_dict(),
    }
    seconds["total"] = time.perf_counter() - t_start

    info = ExportInfo(
        model_dir=str(model_dir) if model_dir is not None else BASE_MODEL_NAME,
        exporter="torch.onnx.export (TorchScript, dynamo=False), eager attention, child process",
        opset=cfg.opset,
        max_length=cfg.max_length,
        int8_settings=int8_scheme,
        int8_kept_fp32=choice.kept_fp32,
        int8_sensitivity=choice.sensitivity,
        int8_search=choice.search,
        fused_ops=fused_ops,
        parity=parity,
        parity_mean={"fp32": round(float(cos_fp32.mean()), 6), "int8": round(float(cos_int8.mean()), 6)},
        n_parity_texts=len(texts),
        seconds={k: round(v, 2) for k, v in seconds.items()},
        versions=_versions(),
    )
    (enc_dir / INFO_NAME).write_text(json.dumps(asdict(info), indent=2) + "\n")
    logger.info(
        "encoder exported in %.1fs: fp32 parity %.6f, int8 parity %.5f (%d MatMuls kept fp32: %s)",
        seconds["total"],
        parity["fp32"],
        parity["int8"],
        len(choice.kept_fp32),
        ", ".join(choice.kept_fp32) or "none",
    )

    spec = EncoderSpec(
        base_model=str(model_dir) if model_dir is not None else BASE_MODEL_NAME,
        dim=ref.hidden,
        max_length=cfg.max_length,
        pooling="mean",
        normalize=True,
        onnx_fp32=f"{ENCODER_DIR}/{FP32_NAME}",
        onnx_int8=f"{ENCODER_DIR}/{INT8_NAME}",
        tokenizer_dir=f"{ENCODER_DIR}/{TOKENIZER_DIR}",
        parity=parity,
        golden_min_cosine={"fp32": cfg.fp32_min_cosine, "int8": cfg.int8_min_cosine},
        int8_scheme=int8_scheme,
    )
    golden = [GoldenVector(text=t, vector=[float(x) for x in v]) for t, v in zip(golden_list, ref.golden, strict=True)]
    return spec, golden


def _normalize_tokenizer_json(path: Path, max_length: int) -> None:
    """Set truncation to ``max_length`` and padding to the longest in the batch (the base file pads to 128)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    padding = tok.padding or {}
    pad_id = int(padding.get("pad_id", tok.token_to_id("[PAD]") or 0))
    pad_token = str(padding.get("pad_token", "[PAD]"))
    tok.enable_truncation(max_length=max_length)
    tok.enable_padding(pad_id=pad_id, pad_token=pad_token)
    tok.save(str(path))
