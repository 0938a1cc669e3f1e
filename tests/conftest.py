"""Shared fixtures: a real redis-server, a tiny real artifact set, app factories.

Nothing here is a mock: Redis is the real server binary on a free loopback
port, Qdrant is embedded local mode in tmp, the seqrec model is trained and
exported by the real training job (one short epoch on a small synthetic
catalog), and the encoder is the deterministic ``FakeEncoder`` whose vectors
are also the artifact set's text and golden vectors.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
TEXT_DIM = 64
CATEGORIES = ("Hair", "Skin", "Nails", "Fragrance")


# ---------------------------------------------------------------- redis
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port, without persistence, for the session."""
    exe = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)
    if exe is None:
        pytest.fail("redis-server is not installed: run `make system-deps`")
    workdir = tmp_path_factory.mktemp("redis")
    port = _free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 15
    while True:
        try:
            if client.ping():
                break
        except redis.exceptions.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"redis-server did not start on port {port}")
            time.sleep(0.05)
    client.close()
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix of its own per test, so tests sharing the server never see each other's keys."""
    return f"t{uuid.uuid4().hex[:10]}"


# ------------------------------------------------------- tiny artifact set
def make_catalog(n: int, seed: int = 0, prefix: str = "P") -> list[dict[str, Any]]:
    """Items in four categories with prices (every 9th item has none)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        cat = CATEGORIES[i % len(CATEGORIES)]
        row: dict[str, Any] = {
            "item_id": f"{prefix}{i:04d}",
            "title": f"{cat} product {i} {rng.choice(['gentle', 'bold', 'fresh', 'classic'])}",
            "description": f"A {cat.lower()} item number {i}.",
            "brand": f"Brand{i % 5}",
            "categories": ["Beauty", cat],
        }
        if i % 9 != 4:
            row["price"] = float(5 + (i * 7) % 60)
        rows.append(row)
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _sequences(item_ids: list[str], n_users: int, seed: int) -> list[dict[str, Any]]:
    """Users who mostly stay in one category, so the model has something to learn."""
    rng = np.random.default_rng(seed)
    by_cat = [item_ids[c :: len(CATEGORIES)] for c in range(len(CATEGORIES))]
    out = []
    for u in range(n_users):
        pool = by_cat[u % len(CATEGORIES)]
        length = int(rng.integers(4, 9))
        out.append({"user_id": f"u{u}", "items": [str(x) for x in rng.choice(pool, size=length)]})
    return out


@dataclass(frozen=True)
class TinyArtifacts:
    root: Path  # artifacts/<version>
    artifacts_dir: Path
    catalog: list[dict[str, Any]]
    version: str


@pytest.fixture(scope="session")
def tiny_artifacts(tmp_path_factory: pytest.TempPathFactory) -> TinyArtifacts:
    """A complete artifact set (manifest with sha256s, golden vectors, seqrec trained one epoch)."""
    return build_tiny_artifacts(tmp_path_factory.mktemp("tiny"))


def build_tiny_artifacts(
    base: Path, *, users: list[dict[str, Any]] | None = None, version: str = "20260101-000000-tiny"
) -> TinyArtifacts:
    """The tiny artifact set under ``base``. ``users``: ``users.jsonl`` rows; when given, seqrec is
    trained with user profiles and the set has the manifest's profile section (as the build writes it)."""
    from service.core.items import item_from_dict, item_text
    from service.core.manifest import EncoderSpec, GoldenVector, ItemsSpec, Manifest
    from service.core.profiles import PROFILE_SECTION
    from service.encoding.fake import FakeEncoder
    from training.config import SeqRecConfig
    from training.data.loader import load_dataset
    from training.data.split import leave_one_out
    from training.encoder.profile_vectors import profile_inputs
    from training.pipeline.stages import write_profile_artifacts
    from training.seqrec.train import train_seqrec

    catalog = make_catalog(48)
    data = base / "data"
    write_jsonl(data / "items.jsonl", catalog)
    write_jsonl(data / "sequences.jsonl", _sequences([r["item_id"] for r in catalog], 120, seed=1))
    if users is not None:
        write_jsonl(data / "users.jsonl", users)
    dataset = load_dataset(data)
    split = leave_one_out(dataset)

    artifacts_dir = base / "artifacts"
    root = artifacts_dir / version
    (root / "catalog").mkdir(parents=True)
    shutil.copyfile(data / "items.jsonl", root / "catalog" / "items.jsonl")
    (root / "items").mkdir()
    (root / "items" / "item_ids.json").write_text(json.dumps(dataset.item_ids))

    encoder = FakeEncoder(dim=TEXT_DIM)
    items = [item_from_dict(r) for r in catalog]
    text_vectors = encoder.encode([item_text(it) for it in items]).astype(np.float32)  # [N, T]
    np.save(root / "items" / "text_vectors.npy", text_vectors)

    # The FakeEncoder is injected at serving time, so no ONNX encoder is loaded from this set;
    # the manifest still lists encoder files, as every set does.
    enc_dir = root / "encoder"
    (enc_dir / "tokenizer").mkdir(parents=True)
    (enc_dir / "encoder.onnx").write_bytes(b"unused: tests inject FakeEncoder\n")
    (enc_dir / "encoder.int8.onnx").write_bytes(b"unused: tests inject FakeEncoder\n")
    (enc_dir / "tokenizer" / "README").write_text("unused: tests inject FakeEncoder\n")

    cfg = SeqRecConfig(
        hidden=16, n_layers=1, n_heads=1, max_len=8, dropout=0.0, batch_size=64, epochs=1, max_minutes=1.0, device="cpu"
    )
    profiles = None
    if users is not None:
        cfg.use_profile = True
        cfg.epochs = 3  # a few epochs, so the profile projection moves away from its init
        profiles = profile_inputs(dataset, encoder.encode)
    seq = train_seqrec(
        split,
        text_vectors,
        cfg,
        root / "seqrec",
        resume=False,
        progress=False,
        profiles=None if profiles is None else profiles.train,
    )
    extra: dict[str, Any] = {}
    if profiles is not None:
        extra[PROFILE_SECTION] = write_profile_artifacts(root, profiles, seq).to_dict()
    for leftover in (root / "seqrec").glob("*.pt"):
        leftover.unlink()  # checkpoints are not serving artifacts

    golden_texts = ["gentle hair shampoo", "bold red nail polish", item_text(items[0])]
    golden = [
        GoldenVector(text=t, vector=v.tolist()) for t, v in zip(golden_texts, encoder.encode(golden_texts), strict=True)
    ]
    manifest = Manifest(
        version=version,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        dataset={"name": "tiny", "n_items": len(items)},
        encoder=EncoderSpec(
            base_model="fake",
            dim=TEXT_DIM,
            max_length=128,
            pooling="mean",
            normalize=True,
            onnx_fp32="encoder/encoder.onnx",
            onnx_int8="encoder/encoder.int8.onnx",
            tokenizer_dir="encoder/tokenizer",
        ),
        items=ItemsSpec(
            count=len(items),
            ids="items/item_ids.json",
            text_vectors="items/text_vectors.npy",
            catalog="catalog/items.jsonl",
        ),
        seqrec=seq.spec,
        golden=golden,
        metrics={"seqrec": seq.metrics},
        extra=extra,
    )
    manifest.record_files(root)
    manifest.write(root)
    (artifacts_dir / "LATEST").write_text(version + "\n")
    return TinyArtifacts(root=root, artifacts_dir=artifacts_dir, catalog=catalog, version=version)


# ------------------------------------------------------------------ apps
AppFactory = Callable[..., Any]


@pytest.fixture
def make_settings(tmp_path: Path, tiny_artifacts: TinyArtifacts) -> Callable[..., Any]:
    """Settings for a test app: tiny artifacts, embedded Qdrant in tmp, no Redis unless given."""
    from pydantic import SecretStr

    from service.config import Settings

    def _make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "var",
            "artifacts_dir": tiny_artifacts.artifacts_dir,
            "admin_token": SecretStr(ADMIN_TOKEN),
            "encoder_variant": "fp32",
            "device": "cpu",
            "qdrant": {"path": str(tmp_path / "var" / "qdrant")},
            "redis": {"url": None},
            # reindex catalogs: tests write them anywhere under their tmp_path
            "catalog_dir": tmp_path,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return _make


@pytest.fixture
def make_client(make_settings: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """``make_client(**settings_overrides)`` -> a started TestClient (closed at teardown)."""
    from fastapi.testclient import TestClient

    from service.encoding.fake import FakeEncoder
    from service.main import create_app
    from service.state import Components

    clients: list[TestClient] = []

    def _make(**overrides: Any) -> TestClient:
        app = create_app(make_settings(**overrides), components=Components(encoder=FakeEncoder(dim=TEXT_DIM)))
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield _make
    for c in reversed(clients):
        c.__exit__(None, None, None)


def admin_headers(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Tiny torch models run fastest on one thread, and two test processes oversubscribing the
    cores slow torch down by orders of magnitude. Use with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------ tests write only to tmp
@pytest.fixture(scope="session", autouse=True)
def repo_untouched() -> Iterator[None]:
    """Fails the session when a test wrote into the checkout (see tests/repo_guard.py)."""
    from tests.repo_guard import REPO, repo_writes, snapshot

    before = snapshot(REPO)
    yield
    found = repo_writes(before, snapshot(REPO))
    if found:
        shown = "\n  ".join(found[:40]) + (f"\n  ... and {len(found) - 40} more" if len(found) > 40 else "")
        pytest.fail(f"tests wrote into the checkout {REPO} (write to tmp_path instead):\n  {shown}", pytrace=False)
