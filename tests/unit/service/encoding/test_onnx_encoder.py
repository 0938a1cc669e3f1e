"""OnnxEncoder and make_session on a tiny real ONNX model (token-embedding lookup) and the real tokenizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from service.core.manifest import EncoderSpec
from service.encoding.base import Encoder, EncoderError
from service.encoding.onnx_encoder import OnnxEncoder
from service.encoding.session import make_session
from service.encoding.tokenize import TextTokenizer

from .conftest import TINY_DIM

TEXTS = [
    "stainless steel chef knife with a long description of the blade, the handle and the box",
    "a",
    "yoga mat",
    "organic argan oil shampoo, 500 ml",
    "usb-c charger",
]


def _expected(texts: list[str], tokenizer_dir: Path, table: np.ndarray, max_length: int) -> np.ndarray:
    """Mean of the token rows (special tokens included), normalised, one text at a time."""
    tok = TextTokenizer(tokenizer_dir, max_length)
    rows = [table[ids].mean(axis=0) for ids in tok.encode(texts)]  # N x [D]
    out = np.stack(rows)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_encode_matches_numpy_reference_in_input_order(tiny_onnx: tuple[Path, np.ndarray], tokenizer_dir: Path) -> None:
    path, table = tiny_onnx
    enc = OnnxEncoder(path, tokenizer_dir, max_length=16, device="cpu", threads=1, batch_size=2, name="tiny")
    assert isinstance(enc, Encoder)
    assert (enc.dim, enc.name, enc.max_length, enc.device) == (TINY_DIM, "tiny", 16, "cpu")
    got = enc.encode(TEXTS)  # batches of 2 by token length: padding must not leak into the means
    assert got.shape == (len(TEXTS), TINY_DIM) and got.dtype == np.float32
    np.testing.assert_allclose(got, _expected(TEXTS, tokenizer_dir, table, 16), rtol=1e-5, atol=1e-6)
    assert enc.encode([]).shape == (0, TINY_DIM)


def test_from_manifest_picks_variant_and_checks_spec(tiny_onnx: tuple[Path, np.ndarray], tokenizer_dir: Path) -> None:
    path, _ = tiny_onnx
    root = path.parent
    tok_rel = Path("tok")
    (root / tok_rel).mkdir(exist_ok=True)
    (root / tok_rel / "tokenizer.json").write_bytes((tokenizer_dir / "tokenizer.json").read_bytes())
    spec = EncoderSpec(
        base_model="tiny-test",
        dim=TINY_DIM,
        max_length=32,
        pooling="mean",
        normalize=True,
        onnx_fp32=path.name,
        onnx_int8=path.name,
        tokenizer_dir=str(tok_rel),
    )
    enc = OnnxEncoder.from_manifest(root, spec, "int8", "cpu", 1)
    assert enc.name == "tiny-test:onnx-int8" and enc.max_length == 32
    with pytest.raises(EncoderError, match="variant"):
        OnnxEncoder.from_manifest(root, spec, "fp16", "cpu", 1)
    with pytest.raises(EncoderError, match="manifest says"):
        OnnxEncoder.from_manifest(root, EncoderSpec(**{**spec.__dict__, "dim": 384}), "fp32", "cpu", 1)
    with pytest.raises(EncoderError, match="pooling"):
        OnnxEncoder.from_manifest(root, EncoderSpec(**{**spec.__dict__, "pooling": "cls"}), "fp32", "cpu", 1)


def test_make_session_devices_and_errors(tiny_onnx: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    path, _ = tiny_onnx
    assert make_session(path, "cpu", threads=1).get_providers() == ["CPUExecutionProvider"]
    assert make_session(path, "auto").get_providers()[0] in ("CUDAExecutionProvider", "CPUExecutionProvider")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(EncoderError, match="cuda"):
            make_session(path, "cuda")
    with pytest.raises(EncoderError, match="device"):
        make_session(path, "tpu")
    with pytest.raises(EncoderError, match="not found"):
        make_session(tmp_path / "missing.onnx", "cpu")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(EncoderError, match="cannot load"):
        make_session(bad, "cpu")
