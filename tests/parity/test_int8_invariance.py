"""Row-wise int8 (the served scheme) is batch-invariant; the former per-tensor dynamic int8 is not.

Fast: a small real ONNX graph (two MatMuls with a nonlinearity between, like a BERT FFN)
quantized by the same functions the export uses, run by onnxruntime on CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from training.encoder.quantize import (
    ROWWISE_SCHEME,
    quantize_dynamic_per_tensor,
    quantize_rowwise,
    session,
)

K, HIDDEN = 128, 256


def _ffn(path: Path, seed: int = 0) -> Path:
    """x [B, L, K] -> MatMul W1 [K, HIDDEN] -> Relu -> MatMul W2 [HIDDEN, K] -> y [B, L, K]."""
    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array((rng.standard_normal((K, HIDDEN)) / np.sqrt(K)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array((rng.standard_normal((HIDDEN, K)) / np.sqrt(HIDDEN)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="ffn/in/MatMul"),
        helper.make_node("Relu", ["h"], ["a"], name="ffn/act"),
        helper.make_node("MatMul", ["a", "w2"], ["y"], name="ffn/out/MatMul"),
    ]
    graph = helper.make_graph(
        nodes,
        "ffn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", K])],
        initializer=[w1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _alone_vs_batched(path: Path) -> float:
    """Largest |difference| of rows run alone vs next to a batch-mate with 50x larger activations."""
    sess = session(path, threads=1)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 6, K)).astype(np.float32)  # [1, L, K]
    loud = 50 * rng.standard_normal((1, 6, K)).astype(np.float32)  # [1, L, K] a batch-mate with outliers
    alone = sess.run(["y"], {"x": x})[0]  # [1, L, K]
    batched = sess.run(["y"], {"x": np.concatenate([x, loud])})[0][:1]  # [1, L, K]
    return float(np.abs(alone - batched).max())


@pytest.fixture(scope="module")
def ffn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _ffn(tmp_path_factory.mktemp("ffn") / "ffn.onnx")


def test_rowwise_int8_is_bit_identical_alone_and_batched(ffn: Path, tmp_path: Path) -> None:
    dst = tmp_path / "rowwise.onnx"
    quantize_rowwise(ffn, dst)
    ops = [n.op_type for n in onnx.load(str(dst)).graph.node]
    assert ops.count("MatMulNBits") == 2 and "MatMul" not in ops
    assert _alone_vs_batched(dst) == 0.0
    # and it stays close to fp32
    sess, ref = session(dst, threads=1), session(ffn, threads=1)
    x = np.random.default_rng(2).standard_normal((3, 5, K)).astype(np.float32)
    y, y_ref = sess.run(["y"], {"x": x})[0], ref.run(["y"], {"x": x})[0]
    cos = (y * y_ref).sum(-1) / (np.linalg.norm(y, axis=-1) * np.linalg.norm(y_ref, axis=-1))
    assert cos.min() > 0.999


def test_former_dynamic_int8_moves_with_its_batch_mates(ffn: Path, tmp_path: Path) -> None:
    """The per-tensor scale is taken over the whole batch: a loud batch-mate coarsens every row."""
    dst = tmp_path / "dynamic.onnx"
    quantize_dynamic_per_tensor(ffn, dst)
    assert _alone_vs_batched(dst) > 1e-3


def test_keep_fp32_and_only_select_nodes(ffn: Path, tmp_path: Path) -> None:
    kept = tmp_path / "kept.onnx"
    quantize_rowwise(ffn, kept, keep_fp32=["ffn/out/MatMul"])
    only = tmp_path / "only.onnx"
    quantize_rowwise(ffn, only, only=["ffn/out/MatMul"])
    fp32_nodes = {p.name: [n.name for n in onnx.load(str(p)).graph.node if n.op_type == "MatMul"] for p in (kept, only)}
    assert fp32_nodes == {"kept.onnx": ["ffn/out/MatMul"], "only.onnx": ["ffn/in/MatMul"]}
    assert ROWWISE_SCHEME.to_dict()["bits"] == 8 and ROWWISE_SCHEME.accuracy_level == 4
