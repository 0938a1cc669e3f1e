"""The service's "+ item->next prior" ranking equals the training harness's (``bench_seqrec.prior_ranks``)
for a tiny model over the full catalog (the candidate pool covers the catalog)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.core.transitions import TransitionPrior
from service.recommender.dense import SeqRecRuntime
from service.recommender.markov import ServedPrior
from tests.unit.training.pipeline.test_transition_stage import N_ITEMS, tiny_build
from training.checkpoint import BEST_NAME, load_weights
from training.data.split import train_item_counts
from training.evaluation.prior import prior_ranks
from training.pipeline.stages import transition_stage
from training.seqrec.model import build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize(
    "shape",
    [{}, {"window": 3, "decay": 0.5, "backward": 0.5, "last": 3, "last_decay": 0.5}],
    ids=["first-order", "window-3-last-3"],
)
def test_service_rescoring_ranks_targets_as_prior_ranks(tmp_path: Path, shape: dict[str, float]) -> None:
    cfg, split, vectors, seq = tiny_build(tmp_path)
    cfg.markov_shapes = [shape]
    spec, _ = transition_stage(cfg, split, vectors, tmp_path, seq.spec.id_embeddings)
    ids = [f"I{i}" for i in range(N_ITEMS)]
    prior = TransitionPrior.load(tmp_path / spec.file)
    runtime = SeqRecRuntime.from_manifest(tmp_path, seq.spec, device="cpu")
    items = runtime.item_vectors(vectors)  # [N, D] (every item trained: the cyclic walks cover the catalog)
    model = build_model(cfg.seqrec, N_ITEMS, vectors, (train_item_counts(split) > 0).astype(np.float32))
    model.load_state_dict(load_weights(tmp_path / "seqrec" / BEST_NAME)[0])

    cases = split.test
    users = runtime.user_vectors([items[list(c.history)] for c in cases])  # [B, D]
    # The chosen weight, and a small one under which the model's own scores decide most ranks.
    for weight in (spec.weight, 0.02):
        served = ServedPrior(prior, ids, weight)
        served_ranks = []
        for c, u in zip(cases, users, strict=True):
            context = served.context([ids[i] for i in c.history])  # what the service conditions on
            scored = served.rescore(u, items, np.arange(N_ITEMS), context, "c", ids, k=N_ITEMS)
            served_ranks.append([r for r, _ in scored].index(c.target))
        ref = prior_ranks(model, cases, prior, [weight])[0]  # [B], 0-based
        assert np.array_equal(np.array(served_ranks), ref), (weight, served_ranks, ref.tolist())
    assert ref.max() > 0  # the small weight leaves non-trivial ranks to compare
