"""End-to-end build: demo data -> artifacts/<version>/ -> embedded Qdrant, with real models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from service.core.index import CatalogIndex, open_client
from service.core.manifest import Manifest, ManifestError, latest_version
from training.cli import main as cli_main
from training.config import DemoConfig
from training.data.demo import generate_demo

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("build")
    data = generate_demo(base / "data", DemoConfig(n_items=300, n_users=600, seed=3))
    out = base / "artifacts"
    qdrant = base / "qdrant"
    rc = cli_main(
        [
            "build",
            "--data",
            str(data),
            "--out",
            str(out),
            "--name",
            "tiny",
            "--qdrant-path",
            str(qdrant),
            "--seqrec-epochs",
            "2",
        ]
    )
    assert rc == 0
    return data, out, qdrant


def test_manifest_lists_verified_files_dims_and_metrics(built: tuple[Path, Path, Path]) -> None:
    data, out, _ = built
    root = latest_version(out)
    assert root.name.endswith("-tiny")
    manifest = Manifest.read(root)
    manifest.verify_files(root)
    assert manifest.items.count == 300
    vectors = np.load(root / manifest.items.text_vectors)
    assert vectors.shape == (300, manifest.encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    source_ids = [json.loads(line)["item_id"] for line in (data / "items.jsonl").read_text().splitlines()]
    assert json.loads((root / manifest.items.ids).read_text()) == source_ids
    assert manifest.seqrec is not None
    assert manifest.encoder.parity["int8"] >= 0.99 and manifest.encoder.parity["fp32"] >= 0.999
    assert len(manifest.golden) > 0
    assert "recall@10" in manifest.metrics["seqrec"]["val"]
    # no staging folder left behind
    assert not any(p.name.endswith(".partial") for p in out.iterdir())


def test_tampered_file_is_refused(built: tuple[Path, Path, Path], tmp_path: Path) -> None:
    import shutil

    _, out, _ = built
    root = latest_version(out)
    copy = tmp_path / root.name
    shutil.copytree(root, copy)
    with (copy / "items" / "text_vectors.npy").open("r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x00\x00\x80\x7f")
    with pytest.raises(ManifestError, match="sha256"):
        Manifest.read(copy).verify_files(copy)


def test_pushed_collection_behind_alias(built: tuple[Path, Path, Path]) -> None:
    _, _, qdrant = built
    client = open_client(None, str(qdrant))
    try:
        index = CatalogIndex(client, alias="items")
        current = index.current_collection()
        assert current is not None and current.startswith("items_v")
        assert index.count() == 300
    finally:
        client.close()


def test_bad_dataset_is_a_clear_cli_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "items.jsonl").write_text('{"item_id": "a", "title": "x"}\n{"item_id": "a", "title": "y"}\n')
    (bad / "sequences.jsonl").write_text('{"user_id": "u", "items": ["a"]}\n')
    rc = cli_main(["build", "--data", str(bad), "--out", str(tmp_path / "o"), "--no-push"])
    assert rc == 2
    assert "items.jsonl:2" in caplog.text
