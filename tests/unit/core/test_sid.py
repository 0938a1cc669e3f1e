"""Semantic-ID table format, collision digits, codec and stable extension."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.core.sid import (
    EOS_TOKEN,
    N_SPECIAL_TOKENS,
    SidCodec,
    SidError,
    SidLayout,
    SidSpec,
    SidTable,
    assign_collision_digits,
    load_semantic_ids,
)


def test_layout_tokens_round_trip() -> None:
    layout = SidLayout(3, 4, 2)
    assert layout.depth == 4
    assert layout.level_sizes == (4, 4, 4, 2)
    assert layout.vocab_size == N_SPECIAL_TOKENS + 14
    assert layout.level_offset(0) == N_SPECIAL_TOKENS > EOS_TOKEN
    sids = np.array([[0, 1, 2, 1], [3, 3, 3, 0]])
    tok = layout.to_tokens(sids)
    assert tok[0].tolist() == [2, 7, 12, 15]
    assert layout.from_tokens(tok).tolist() == sids.tolist()
    with pytest.raises(SidError):
        SidLayout(0, 4, 2)


def test_collision_digits_count_within_groups_in_row_order() -> None:
    codes = np.array([[1, 2], [0, 0], [1, 2], [1, 2], [0, 0], [5, 5]])
    assert assign_collision_digits(codes, 4).tolist() == [0, 0, 1, 2, 1, 0]
    with pytest.raises(SidError, match="collision capacity"):
        assign_collision_digits(codes, 2)


def test_table_is_unique_and_reports_stats() -> None:
    layout = SidLayout(2, 4, 3)
    table = SidTable.from_codes(np.array([[0, 1], [0, 1], [2, 3], [1, 1]]), layout)
    assert len({tuple(r) for r in table.sids.tolist()}) == 4
    assert table.unique_prefix_share() == pytest.approx(0.5)
    assert table.codebook_usage() == [0.75, 0.5]
    with pytest.raises(SidError, match="not unique"):
        SidTable(np.array([[0, 1, 0], [0, 1, 0]]), layout)
    with pytest.raises(SidError, match="outside"):
        SidTable(np.array([[0, 9, 0]]), layout)


def test_extend_keeps_existing_rows_and_takes_smallest_free_digit() -> None:
    layout = SidLayout(2, 4, 3)
    table = SidTable.from_codes(np.array([[0, 1], [0, 1], [2, 3]]), layout)
    # item 0 leaves the catalog: its digit 0 becomes free for the next (0, 1) item
    kept = table.select([1, 2])
    grown = kept.extend(np.array([[0, 1], [3, 3], [0, 1]]))
    assert grown.sids[:2].tolist() == kept.sids.tolist()
    assert grown.sids[2:].tolist() == [[0, 1, 0], [3, 3, 0], [0, 1, 2]]
    with pytest.raises(SidError, match="no free collision digit"):
        grown.extend(np.array([[0, 1]]))


def test_codec_encodes_residually_and_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    w0, b0 = rng.normal(size=(6, 5)).astype(np.float32), rng.normal(size=5).astype(np.float32)
    w1, b1 = rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32)
    cbs = [rng.normal(size=(4, 3)).astype(np.float32) for _ in range(2)]
    codec = SidCodec([(w0, b0), (w1, b1)], cbs)
    x = rng.normal(size=(7, 6)).astype(np.float32)
    codes = codec.encode(x)
    z = np.maximum(x @ w0 + b0, 0) @ w1 + b1
    for i in range(7):
        c0 = int(np.argmin(((z[i] - cbs[0]) ** 2).sum(1)))
        r = z[i] - cbs[0][c0]
        c1 = int(np.argmin(((r - cbs[1]) ** 2).sum(1)))
        assert codes[i].tolist() == [c0, c1]
    codec.save(tmp_path / "semantic_ids" / "codec.npz")
    table = SidTable.from_codes(codes, SidLayout(2, 4, 8))
    table.save(tmp_path / "semantic_ids" / "sids.npy")
    spec = SidSpec(2, 4, 8)
    spec2, table2, codec2 = load_semantic_ids(tmp_path, spec.to_dict())
    assert spec2 == spec
    assert table2.sids.tolist() == table.sids.tolist()
    assert codec2.encode(x).tolist() == codes.tolist()
    with pytest.raises(SidError, match="expected text vectors"):
        codec.encode(np.zeros((2, 5)))
    with pytest.raises(SidError, match="malformed"):
        SidSpec.from_dict({"n_levels": 2})
