"""Batched constrained beam search vs the plain trie walk on random catalogs and models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.sid import SidLayout
from service.semantic_ids.beam import StepFn, beam_search
from service.semantic_ids.prefix_index import PrefixIndex
from service.semantic_ids.reference import reference_beam_search

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# The batched search runs where its prefix index lives; CUDA runs when a GPU is present.
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def random_catalog(rng: np.random.Generator, layout: SidLayout, n: int) -> np.ndarray:
    """n unique sids [n, depth] (fewer when the space is smaller)."""
    space = int(np.prod(layout.level_sizes))
    flat = rng.choice(space, size=min(n, space), replace=False)
    return np.stack(np.unravel_index(flat, layout.level_sizes), axis=1).astype(np.int64)


def table_step(rng: np.random.Generator, layout: SidLayout, batch: int, device: str = "cpu") -> StepFn:
    """Logits = per-request base + one random row per (position, token): a deterministic
    function of (request, prefix) computed elementwise, so batch shape cannot change it.
    Computed on ``device`` and returned on the prefix's device, so the reference walk (CPU
    prefixes) sees the very logits the batched search sees on a GPU."""
    v = layout.vocab_size
    base = torch.from_numpy(rng.normal(0, 2, (batch, v)).astype(np.float32)).to(device)  # [B, V]
    table = torch.from_numpy(rng.normal(0, 2, (layout.depth, v, v)).astype(np.float32)).to(device)  # [depth, V, V]

    def step(prefix: torch.Tensor) -> torch.Tensor:
        b, w, t = prefix.shape
        p = prefix.to(device)
        acc = base[:, None, :].expand(b, w, v).clone()  # [B, W, V]
        for pos in range(t):
            acc = acc + table[pos][p[:, :, pos]]
        return acc.to(prefix.device)

    return step


@st.composite
def cases(draw: st.DrawFn) -> dict[str, object]:
    n_levels = draw(st.integers(1, 3))
    layout = SidLayout(n_levels, draw(st.integers(2, 6)), draw(st.integers(1, 3)))
    seed = draw(st.integers(0, 2**31 - 1))
    n = draw(st.integers(1, 60))
    beam = draw(st.integers(1, 8))
    k = draw(st.integers(1, beam))
    batch = draw(st.integers(1, 3))
    filtered = draw(st.booleans())
    prior = draw(st.sampled_from([0.0, 0.5, 1.0, 3.0]))  # prior weight (0 = no prior)
    renormalize = draw(st.booleans())
    return {
        "renormalize": renormalize,
        "layout": layout,
        "seed": seed,
        "n": n,
        "beam": beam,
        "k": k,
        "batch": batch,
        "filtered": filtered,
        "prior": prior,
    }


def random_log_prior(rng: np.random.Generator, batch: int, n: int) -> np.ndarray:
    """Log-weights [B, n] spread over many orders of magnitude, some items at -inf (never)."""
    lp = rng.normal(0, 4, (batch, n)).astype(np.float32)
    lp[rng.random((batch, n)) < 0.15] = -np.inf
    return lp


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=60, deadline=None)
@given(cases())
def test_batched_equals_reference(device: str, case: dict[str, object]) -> None:
    layout = case["layout"]
    assert isinstance(layout, SidLayout)
    rng = np.random.default_rng(int(case["seed"]))  # type: ignore[call-overload]
    sids = random_catalog(rng, layout, int(case["n"]))  # type: ignore[call-overload]
    batch, beam, k = int(case["batch"]), int(case["beam"]), int(case["k"])  # type: ignore[call-overload]
    step = table_step(rng, layout, batch, device)
    allowed = rng.random((batch, len(sids))) < 0.5 if case["filtered"] else None
    weight = float(case["prior"])  # type: ignore[arg-type]
    log_prior = random_log_prior(rng, batch, len(sids)) if weight > 0 else None
    index = PrefixIndex(sids, layout, torch.device(device))
    mask = None if allowed is None else torch.from_numpy(allowed).to(device)
    lp = None if log_prior is None else torch.from_numpy(log_prior).to(device)
    renorm = bool(case["renormalize"])
    res = beam_search(step, index, batch, beam, k, mask, log_prior=lp, prior_weight=weight, renormalize=renorm).to_cpu()
    ref_items, ref_scores = reference_beam_search(
        step, sids, layout, batch, beam, k, allowed, log_prior=log_prior, prior_weight=weight, renormalize=renorm
    )
    for b in range(batch):
        got = [int(i) for i in res.items[b] if i >= 0]
        assert got == ref_items[b]
        np.testing.assert_allclose(res.scores[b, : len(got)].numpy(), ref_scores[b], rtol=0, atol=1e-4)
        usable = np.ones(len(sids), dtype=bool) if allowed is None else allowed[b].copy()
        if log_prior is not None:
            usable &= np.isfinite(log_prior[b])  # a prior of -inf rules the item out
        assert len(got) == min(k, int(usable.sum()))  # k items whenever k usable items exist
        assert all(usable[i] for i in got)
        assert len(set(got)) == len(got)
        # decoded tokens are the items' sids
        for j, item in enumerate(got):
            assert layout.from_tokens(res.tokens[b, j].numpy()).tolist() == sids[item].tolist()


def test_full_beam_finds_exact_best_items() -> None:
    """With the beam as wide as the catalog, beam search is exhaustive: compare to brute force."""
    rng = np.random.default_rng(0)
    layout = SidLayout(2, 4, 2)
    sids = random_catalog(rng, layout, 20)
    step = table_step(rng, layout, 2)
    res = beam_search(step, PrefixIndex(sids, layout), 2, beam=32, k=5)
    tokens = torch.from_numpy(layout.to_tokens(sids))  # [N, depth]
    for b in range(2):
        totals = []
        for row in tokens:
            s = 0.0
            for t in range(layout.depth):
                prefix = row[:t].view(1, 1, t).expand(2, 1, t)
                s += float(torch.log_softmax(step(prefix)[b, 0], -1)[row[t]])
            totals.append(s)
        best = np.argsort(-np.array(totals))[:5]
        assert res.items[b].tolist() == best.tolist()


def test_prior_score_is_model_plus_weighted_normalised_prior() -> None:
    """Exhaustive beam with a prior: the scores are log p_model(sid) + w * log(prior / total prior)
    (the per-level terms telescope), and the ranking is that of the brute-force sum."""
    rng = np.random.default_rng(5)
    layout = SidLayout(3, 4, 2)
    sids = random_catalog(rng, layout, 25)
    step = table_step(rng, layout, 2)
    log_prior = rng.normal(0, 3, (2, 25)).astype(np.float32)
    weight = 0.7
    res = beam_search(
        step, PrefixIndex(sids, layout), 2, beam=64, k=25, log_prior=torch.from_numpy(log_prior), prior_weight=weight
    )
    plain = beam_search(step, PrefixIndex(sids, layout), 2, beam=64, k=25)
    for b in range(2):
        model = {int(i): float(s) for i, s in zip(plain.items[b], plain.scores[b], strict=True)}
        norm = log_prior[b].astype(np.float64) - np.log(np.exp(log_prior[b].astype(np.float64)).sum())
        want = {i: model[i] + weight * norm[i] for i in range(25)}
        got = {int(i): float(s) for i, s in zip(res.items[b], res.scores[b], strict=True)}
        assert got.keys() == want.keys()
        for i in got:
            assert got[i] == pytest.approx(want[i], abs=1e-4)
        assert [int(i) for i in res.items[b]] == sorted(want, key=lambda i: -want[i])


@pytest.mark.parametrize("weight", [0.0, 0.7, 2.0])
def test_renormalized_scores_are_a_distribution_over_allowed_items(weight: float) -> None:
    """Exhaustive renormalised beam: the scores are log-probabilities summing to 1 over the allowed
    items, each the product over levels of softmax(model log-prob + w * log child mass) over the
    node's valid children (checked by brute force on the trie)."""
    rng = np.random.default_rng(8)
    layout = SidLayout(3, 4, 2)
    sids = random_catalog(rng, layout, 30)
    step = table_step(rng, layout, 2)
    allowed = rng.random((2, 30)) < 0.7
    log_prior = rng.normal(0, 3, (2, 30)).astype(np.float32)
    res = beam_search(
        step,
        PrefixIndex(sids, layout),
        2,
        beam=64,
        k=30,
        allowed=torch.from_numpy(allowed),
        log_prior=torch.from_numpy(log_prior) if weight else None,
        prior_weight=weight,
        renormalize=True,
    )
    for b in range(2):
        got = {int(i): float(s) for i, s in zip(res.items[b], res.scores[b], strict=True) if i >= 0}
        assert set(got) == set(np.flatnonzero(allowed[b]).tolist())
        assert sum(math.exp(s) for s in got.values()) == pytest.approx(1.0, abs=1e-4)
        mass = np.where(allowed[b], np.exp(log_prior[b].astype(np.float64)), 0.0)
        for item, score in got.items():
            want = 0.0
            for level in range(layout.depth):
                prefix = sids[item, :level]
                under = (sids[:, :level] == prefix).all(axis=1) & allowed[b]  # items under the node
                codes = sorted(set(sids[under, level].tolist()))
                tokens = torch.tensor(layout.to_tokens(sids[item])[:level]).view(1, 1, level).expand(2, 1, level)
                logp = torch.log_softmax(step(tokens)[b, 0].double(), dim=-1).numpy()
                off = layout.level_offset(level)
                term = {c: logp[off + c] + weight * np.log(mass[under & (sids[:, level] == c)].sum()) for c in codes}
                top = max(term.values())
                want += term[int(sids[item, level])] - (top + np.log(sum(np.exp(t - top) for t in term.values())))
            assert score == pytest.approx(want, abs=1e-4)


def test_prior_steers_the_beam_to_its_items() -> None:
    """A narrow beam without a prior misses an item the model ranks low; a strong prior on it
    makes the beam decode it first."""
    rng = np.random.default_rng(6)
    layout = SidLayout(3, 4, 2)
    sids = random_catalog(rng, layout, 40)
    step = table_step(rng, layout, 1)
    plain = beam_search(step, PrefixIndex(sids, layout), 1, beam=2, k=2)
    full = beam_search(step, PrefixIndex(sids, layout), 1, beam=64, k=40)
    worst = int(full.items[0, -1])  # the model's least likely item
    assert worst not in plain.items[0].tolist()
    lp = torch.full((1, 40), -20.0)
    lp[0, worst] = 0.0
    guided = beam_search(step, PrefixIndex(sids, layout), 1, beam=2, k=2, log_prior=lp, prior_weight=5.0)
    assert int(guided.items[0, 0]) == worst


def test_filter_excluding_everything_returns_no_items() -> None:
    rng = np.random.default_rng(1)
    layout = SidLayout(3, 4, 2)
    sids = random_catalog(rng, layout, 30)
    allowed = torch.zeros(1, 30, dtype=torch.bool)
    res = beam_search(table_step(rng, layout, 1), PrefixIndex(sids, layout), 1, 4, 3, allowed)
    assert res.items.tolist() == [[-1, -1, -1]]


def test_bad_arguments_raise() -> None:
    layout = SidLayout(2, 4, 2)
    sids = random_catalog(np.random.default_rng(2), layout, 10)
    index = PrefixIndex(sids, layout)
    step = table_step(np.random.default_rng(3), layout, 1)
    with pytest.raises(ValueError, match="k <= beam"):
        beam_search(step, index, 1, beam=2, k=3)
    with pytest.raises(ValueError, match="allowed mask"):
        beam_search(step, index, 1, beam=2, k=1, allowed=torch.ones(1, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="rows for a batch"):
        beam_search(step, index, 1, beam=2, k=1, allowed=torch.ones(2, 10, dtype=torch.bool))
    with pytest.raises(ValueError, match="log prior has"):
        beam_search(step, index, 1, beam=2, k=1, log_prior=torch.zeros(2, 10))
    with pytest.raises(ValueError, match="log prior must be"):
        beam_search(step, index, 1, beam=2, k=1, log_prior=torch.zeros(1, 5))
    with pytest.raises(ValueError, match="prior_weight"):
        beam_search(step, index, 1, beam=2, k=1, log_prior=torch.zeros(1, 10), prior_weight=-1.0)
    with pytest.raises(ValueError, match="not unique"):
        PrefixIndex(np.vstack([sids, sids[:1]]), layout)
