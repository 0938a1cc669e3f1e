"""benchmarks.items_api on the tiny set: every figure is produced, the encoder-alone pass included."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import SecretStr

from benchmarks.items_api import TOKEN, phase_seconds, run


def test_run_reports_api_and_encoder_figures(make_client: Callable[..., Any]) -> None:
    client = make_client(admin_token=SecretStr(TOKEN))
    state = client.app.state.recsvc
    figures = run(client, singles=2, batches=2, batch=3, encoder=state.encoder)
    assert set(figures) == {
        "upsert_to_recommendable_p50_ms",
        "upsert_to_recommendable_p99_ms",
        "upserts_per_s",
        "encoder_only_items_per_s",
        "api_over_encoder_ratio",
    }
    assert all(v > 0 for v in figures.values())
    snap = state.store.snapshot
    assert {"BENCH-S0", "BENCH-S1", "BENCH-B1-2"} <= set(snap.row_of)


def test_phase_shares_cover_every_step(make_client: Callable[..., Any]) -> None:
    client = make_client()
    state = client.app.state.recsvc
    shares = client.portal.call(phase_seconds, state, 2, 3)
    assert set(shares) == {
        "share_encode",
        "share_seqrec_fusion",
        "share_log_append_fsync",
        "share_snapshot_apply",
        "share_store_write",
    }
    assert abs(sum(shares.values()) - 1.0) < 1e-9 and all(v >= 0 for v in shares.values())
    assert "PHASE-1-2" in state.store.snapshot.row_of and "PHASE-1-2" in state.items.log.state
