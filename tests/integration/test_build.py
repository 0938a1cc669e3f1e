"""End-to-end build: demo data -> artifacts/<version>/ -> embedded Qdrant, with real models.

The build runs the demo's own config (``training/configs/demo.yaml``, what ``make demo`` builds: every
stage, the generative ones included) on a small shop, kept fast by ``--set`` overrides of the training
lengths only, and the built set then serves every mode."""

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

REPO = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO / "training" / "configs" / "demo.yaml"
# Only how long each stage trains: the demo config's models, inputs and decoding stay as make demo builds them.
FAST = ["semantic_ids.epochs=20", "genrec.epochs=2", "genrec.val_users=100", "genrec.test_users=100"]

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
            "--config",
            str(DEMO_CONFIG),
            *[arg for kv in FAST for arg in ("--set", kv)],
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
    # the demo config's generative stages
    assert {"semantic_ids", "genrec"} <= set(manifest.extra)
    assert manifest.metrics["genrec"]["epochs"] == 2 and "ndcg@10" in manifest.metrics["genrec"]["test"]
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


def test_the_demo_set_serves_every_mode(built: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """What ``make demo`` promises: dense, generative and hybrid all answer on the set the demo config builds."""
    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from service.config import Settings
    from service.main import create_app

    _, out, _ = built
    root = latest_version(out)
    ids = json.loads((root / Manifest.read(root).items.ids).read_text())
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=tmp_path / "var",
        artifacts_dir=out,
        admin_token=SecretStr("test-admin-token-0123456789abcdef"),
        device="cpu",
        qdrant={"path": str(tmp_path / "qdrant")},
        redis={"url": None},
    )
    with TestClient(create_app(settings)) as client:
        history = ids[:3]
        served = {}
        for mode in ("dense", "generative", "hybrid"):
            resp = client.post("/recommend", json={"history": history, "mode": mode, "k": 5})
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert body["mode"] == mode and len(body["items"]) == 5
            assert not {it["item_id"] for it in body["items"]} & set(history)  # history excluded by default
            served[mode] = [it["item_id"] for it in body["items"]]
        assert set(served["hybrid"]) <= set(ids)
