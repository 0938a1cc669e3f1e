"""Manifest round trip, checksums and tamper detection, latest-version resolution."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.core.manifest import (
    MANIFEST_NAME,
    EncoderSpec,
    GoldenVector,
    ItemsSpec,
    Manifest,
    ManifestError,
    SeqRecSpec,
    latest_version,
)


def _write_set(root: Path, version: str = "v1") -> Manifest:
    for rel, data in {
        "encoder/encoder.onnx": b"fp32",
        "encoder/encoder.int8.onnx": b"int8",
        "encoder/tokenizer/tokenizer.json": b"{}",
        "items/item_ids.json": b'["a", "b"]',
        "items/text_vectors.npy": b"vectors",
        "catalog/items.jsonl": b'{"item_id": "a", "title": "A"}\n{"item_id": "b", "title": "B"}\n',
        "seqrec/user_tower.onnx": b"tower",
        "seqrec/id_embeddings.npy": b"ids",
        "seqrec/text_projection.npz": b"proj",
    }.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    m = Manifest(
        version=version,
        created_at="2026-01-01T00:00:00+00:00",
        dataset={"name": "tiny"},
        encoder=EncoderSpec(
            base_model="m",
            dim=4,
            max_length=16,
            pooling="mean",
            normalize=True,
            onnx_fp32="encoder/encoder.onnx",
            onnx_int8="encoder/encoder.int8.onnx",
            tokenizer_dir="encoder/tokenizer",
            parity={"fp32": 0.9999, "int8": 0.995},
        ),
        items=ItemsSpec(
            count=2, ids="items/item_ids.json", text_vectors="items/text_vectors.npy", catalog="catalog/items.jsonl"
        ),
        seqrec=SeqRecSpec(
            dim=8,
            max_len=5,
            user_tower="seqrec/user_tower.onnx",
            id_embeddings="seqrec/id_embeddings.npy",
            text_projection="seqrec/text_projection.npz",
        ),
        golden=[GoldenVector(text="hello", vector=[0.5, 0.5, 0.5, 0.5])],
        metrics={"seqrec": {"val": {"recall@10": 0.1}}},
        extra={"semantic_ids": {"levels": 3}},
    )
    m.record_files(root)
    m.write(root)
    return m


def test_round_trip_keeps_every_section(tmp_path: Path) -> None:
    m = _write_set(tmp_path)
    back = Manifest.read(tmp_path)
    assert back == m
    assert back.encoder.golden_min_cosine == {"fp32": 0.999, "int8": 0.99}
    assert back.extra == {"semantic_ids": {"levels": 3}}
    assert MANIFEST_NAME not in back.files
    back.verify_files(tmp_path)


def test_tampered_or_missing_file_is_detected(tmp_path: Path) -> None:
    m = _write_set(tmp_path)
    (tmp_path / "items" / "text_vectors.npy").write_bytes(b"vectorz")  # same size, other bytes
    with pytest.raises(ManifestError, match=r"sha256: items/text_vectors\.npy"):
        m.verify_files(tmp_path)
    (tmp_path / "items" / "text_vectors.npy").unlink()
    with pytest.raises(ManifestError, match=r"missing: items/text_vectors\.npy"):
        m.verify_files(tmp_path)


def test_referenced_but_unlisted_file_is_refused(tmp_path: Path) -> None:
    m = _write_set(tmp_path)
    del m.files["seqrec/user_tower.onnx"]
    with pytest.raises(ManifestError, match="does not list"):
        m.verify_files(tmp_path)


def test_malformed_manifests(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"no manifest\.json"):
        Manifest.read(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ManifestError, match="invalid JSON"):
        Manifest.read(tmp_path)
    m = _write_set(tmp_path)
    d = m.to_dict()
    d["format_version"] = 99
    with pytest.raises(ManifestError, match="format_version 99"):
        Manifest.from_dict(d)
    d = m.to_dict()
    del d["encoder"]["dim"]
    with pytest.raises(ManifestError, match="malformed"):
        Manifest.from_dict(d)


def test_latest_version_prefers_pointer_then_newest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="make demo-build"):
        latest_version(tmp_path)
    _write_set(tmp_path / "20260101-a", "20260101-a")
    _write_set(tmp_path / "20260202-b", "20260202-b")
    (tmp_path / "20260303-partial").mkdir()  # no manifest: never picked
    assert latest_version(tmp_path).name == "20260202-b"
    (tmp_path / "LATEST").write_text("20260101-a\n")
    assert latest_version(tmp_path).name == "20260101-a"
    (tmp_path / "LATEST").write_text("gone\n")
    with pytest.raises(ManifestError, match="gone"):
        latest_version(tmp_path)


def test_written_manifest_is_plain_json(tmp_path: Path) -> None:
    _write_set(tmp_path)
    data = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert data["items"]["count"] == 2 and data["format_version"] == 1
