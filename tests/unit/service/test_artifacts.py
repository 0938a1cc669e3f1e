"""Artifact verification against the live encoder: sha256, dims, golden vectors, catalog."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from service.artifacts import ArtifactError, CatalogError, aligned_seqrec_vectors, load_artifacts, read_catalog
from service.core.items import Item
from service.core.manifest import Manifest
from service.encoding.fake import FakeEncoder
from tests.conftest import TEXT_DIM, TinyArtifacts


def copy_set(tiny: TinyArtifacts, tmp_path: Path) -> Path:
    root = tmp_path / tiny.root.name
    shutil.copytree(tiny.root, root)
    return root


def test_loads_a_consistent_set(tiny_artifacts: TinyArtifacts) -> None:
    art = load_artifacts(tiny_artifacts.root, FakeEncoder(dim=TEXT_DIM), variant="int8", device="cpu")
    assert art.version == tiny_artifacts.version and len(art.item_ids) == 48
    assert art.text_vectors.shape == (48, TEXT_DIM)
    assert art.seqrec is not None and art.seqrec_vectors is not None
    assert art.seqrec_vectors.shape == (48, art.seqrec.dim)
    assert art.golden_min_cosine > 0.999
    assert [it.item_id for it in art.ordered_items()] == art.item_ids


def test_tampered_file_is_refused(tiny_artifacts: TinyArtifacts, tmp_path: Path) -> None:
    root = copy_set(tiny_artifacts, tmp_path)
    with (root / "seqrec" / "id_embeddings.npy").open("r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x00\x00\xc0\x7f")
    with pytest.raises(ArtifactError, match=r"sha256: seqrec/id_embeddings\.npy"):
        load_artifacts(root, FakeEncoder(dim=TEXT_DIM), variant="int8")


def test_encoder_of_another_dim_is_refused(tiny_artifacts: TinyArtifacts) -> None:
    with pytest.raises(ArtifactError, match="encoder dim"):
        load_artifacts(tiny_artifacts.root, FakeEncoder(dim=32), variant="int8")


def test_golden_vectors_not_reproduced_are_refused(tiny_artifacts: TinyArtifacts, tmp_path: Path) -> None:
    root = copy_set(tiny_artifacts, tmp_path)
    manifest = Manifest.read(root)
    rng = np.random.default_rng(0)
    for g in manifest.golden:  # vectors of "another encoder"
        v = np.asarray(g.vector) + rng.normal(scale=0.3, size=len(g.vector))
        g.vector = (v / np.linalg.norm(v)).tolist()
    manifest.write(root)
    with pytest.raises(ArtifactError, match="golden"):
        load_artifacts(root, FakeEncoder(dim=TEXT_DIM), variant="int8")
    manifest.golden = []
    manifest.write(root)
    with pytest.raises(ArtifactError, match="no golden"):
        load_artifacts(root, FakeEncoder(dim=TEXT_DIM), variant="int8")


def test_catalog_must_hold_the_item_ids(tiny_artifacts: TinyArtifacts, tmp_path: Path) -> None:
    root = copy_set(tiny_artifacts, tmp_path)
    lines = (root / "catalog" / "items.jsonl").read_text().splitlines()
    (root / "catalog" / "items.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    manifest = Manifest.read(root)
    manifest.record_files(root)  # re-hash so only the content check can catch it
    manifest.write(root)
    with pytest.raises(ArtifactError, match="catalog and item ids differ"):
        load_artifacts(root, FakeEncoder(dim=TEXT_DIM), variant="int8")


def test_read_catalog_errors_name_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "items.jsonl"
    p.write_text('{"item_id": "a", "title": "A"}\n\n{"item_id": "b", "title": "B", "price": "x"}\n')
    with pytest.raises(CatalogError, match=r"items\.jsonl:3: .*price"):
        read_catalog(p)
    p.write_text('{"item_id": "a", "title": "A"}\n{"item_id": "a", "title": "B"}\n')
    with pytest.raises(CatalogError, match="duplicate item_id 'a'"):
        read_catalog(p)
    p.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(CatalogError, match="UTF-8"):
        read_catalog(p)
    with pytest.raises(CatalogError, match="not found"):
        read_catalog(tmp_path / "missing.jsonl")
    p.write_text('{"item_id": "a", "title": "A"}\n')
    assert read_catalog(p) == [Item(item_id="a", title="A")]


def test_aligned_seqrec_vectors_keep_id_embeddings_by_id(tiny_artifacts: TinyArtifacts) -> None:
    art = load_artifacts(tiny_artifacts.root, FakeEncoder(dim=TEXT_DIM), variant="int8")
    assert art.seqrec is not None and art.seqrec_vectors is not None
    # reordered, one removed, one new
    items = [art.items[art.item_ids[5]], art.items[art.item_ids[2]], Item(item_id="new", title="brand new")]
    text = np.stack([art.text_vectors[5], art.text_vectors[2], art.text_vectors[0]])
    out = aligned_seqrec_vectors(art.seqrec, art, items, text)
    np.testing.assert_allclose(out[0], art.seqrec_vectors[5], atol=1e-6)
    np.testing.assert_allclose(out[1], art.seqrec_vectors[2], atol=1e-6)
    text_only = art.seqrec.item_vectors(text[2:], np.zeros(1, dtype=bool))[0]
    np.testing.assert_allclose(out[2], text_only, atol=1e-6)
    assert json.loads((tiny_artifacts.root / "items" / "item_ids.json").read_text()) == art.item_ids


@pytest.mark.parametrize("cold_k", [0, 3])
def test_batch_seqrec_vectors_equal_the_whole_catalog_computation(tiny_artifacts: TinyArtifacts, cold_k: int) -> None:
    """The O(batch) fusion gives each item the vector the former whole-catalog computation gave it:
    known ids with changed text, known ids whose ID row was never trained, new ids, cold rule off/on.
    Tolerance: rtol 1e-5 / atol 1e-6 (a matrix product over a subset of rows may round differently in the
    last bit; float32 epsilon is 1.2e-7)."""
    from service.artifacts import aligned_seqrec_vectors_full
    from service.core.seqrec import ColdIdRule, fuse_item_vectors
    from service.recommender.dense import SeqRecRuntime

    art = load_artifacts(tiny_artifacts.root, FakeEncoder(dim=TEXT_DIM), variant="int8", device="cpu")
    assert art.seqrec is not None and art.manifest.seqrec is not None
    ids = art.seqrec.id_embeddings.copy()
    ids[[1, 4, 7]] = 0.0  # never trained: cold, they borrow ID rows when the rule is on
    runtime = SeqRecRuntime(
        tiny_artifacts.root / art.manifest.seqrec.user_tower,
        ids,
        art.seqrec.W,
        art.seqrec.b,
        max_len=art.seqrec.max_len,
        device="cpu",
        cold_ids=ColdIdRule(cold_k, 0.1, 0.8),
        item_norm=art.seqrec.item_norm,
    )
    runtime.item_vectors(art.text_vectors)  # sets the reference, as loading the set does
    rng = np.random.default_rng(0)
    known = [art.items[art.item_ids[r]] for r in (9, 1, 30, 4)]
    new = [Item(item_id=f"new-{i}", title=f"brand new {i}") for i in range(5)]
    items = [known[0], new[0], known[1], new[1], known[2], new[2], new[3], known[3], new[4]]
    text = rng.normal(size=(len(items), TEXT_DIM)).astype(np.float32)  # [M, T]: new text for every item
    text[0] = art.text_vectors[9]  # one unchanged known item
    batch = aligned_seqrec_vectors(runtime, art, items, text)
    full = aligned_seqrec_vectors_full(runtime, art, items, text)
    assert batch.shape == full.shape == (len(items), runtime.dim) and batch.dtype == np.float32
    np.testing.assert_allclose(batch, full, rtol=1e-5, atol=1e-6)
    # each row alone is the same as in the batch (no row depends on another)
    for i in range(len(items)):
        np.testing.assert_allclose(
            aligned_seqrec_vectors(runtime, art, items[i : i + 1], text[i : i + 1])[0], batch[i], rtol=1e-5, atol=1e-6
        )
    # the cold rule did change the cold rows when on (so the comparison covers it)
    text_only = fuse_item_vectors(text, None, runtime.W, runtime.b, runtime.item_norm)  # [M, D]
    cold_rows = [1, 2, 3, 5, 6, 7, 8]  # new ids and the untrained known ones (rows 1 and 4 of the set)
    assert np.allclose(batch[cold_rows], text_only[cold_rows], atol=1e-6) == (cold_k == 0)
    assert not np.allclose(batch[[0, 4]], text_only[[0, 4]], atol=1e-3)  # trained ids keep their ID rows
