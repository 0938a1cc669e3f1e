"""Summary of a dataset folder and two model-free baselines on its leave-one-out split.

Use it to check a catalog you bring before training on it, and to regenerate
the figures in docs/DATA.md:

    python -m training.data.stats DIR [--allow-empty-titles] [--no-baselines]

Prints one JSON object: counts, sequence lengths, load time, and full-ranking
Recall/NDCG@{5,10} on the validation and test cases of

- ``popularity``: training interaction counts (training.metrics.PopularityModel);
- ``transitions``: first-order item -> next item counts from the training
  sequences, scored from the last history item, popularity breaking ties.
  A trained sequential model should beat both.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from service.core.transitions import transition_counts
from training.data.loader import Dataset, DatasetError, load_dataset
from training.data.split import EvalCase, Split, leave_one_out, train_item_counts
from training.metrics import PopularityModel, evaluate

logger = logging.getLogger(__name__)


@dataclass
class DatasetSummary:
    name: str
    n_items: int
    n_users: int
    n_interactions: int
    n_profiles: int
    seq_len_mean: float
    seq_len_median: float
    seq_len_min: int
    seq_len_max: int
    items_in_no_sequence: int
    eval_users: int
    load_seconds: float
    # model -> split ("val" / "test") -> metric -> value
    baselines: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)


class TransitionModel:
    """First-order Markov baseline: score[j] = count(last history item -> j) in training sequences.

    Counts live in CSR form (``indptr`` over the previous item); popularity, scaled
    into [0, 1), breaks ties so items never seen after the last one keep a
    popularity order.
    """

    def __init__(self, train: Sequence[Sequence[int]], n_items: int, popularity: PopularityModel) -> None:
        self.indptr, self.cols, self.counts = transition_counts(train, n_items)  # CSR [N + 1], [U], [U]
        self.base = popularity.item_scores / (len(popularity.item_scores) + 1.0)  # [N], in (0, 1)

    def __call__(self, cases: Sequence[EvalCase]) -> npt.NDArray[np.float64]:
        scores = np.tile(self.base, (len(cases), 1))  # [B, N]
        for r, case in enumerate(cases):
            if case.history:
                last = case.history[-1]
                lo, hi = self.indptr[last], self.indptr[last + 1]
                scores[r, self.cols[lo:hi]] += self.counts[lo:hi]
        return scores


def baselines(split: Split) -> dict[str, dict[str, dict[str, float]]]:
    """Recall/NDCG@{5,10} of the popularity and transition baselines on val and test."""
    if not split.test:
        return {}
    popularity = PopularityModel(train_item_counts(split))
    transitions = TransitionModel(split.train, split.n_items, popularity)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, model in (("popularity", popularity), ("transitions", transitions)):
        out[name] = {}
        for part, cases in (("val", split.val), ("test", split.test)):
            t0 = time.perf_counter()
            out[name][part] = {k: round(v, 4) for k, v in evaluate(model, cases, progress=True).items()}
            logger.info("%s on %s: %s in %.1fs", name, part, out[name][part], time.perf_counter() - t0)
    return out


def summarize(dataset: Dataset, load_seconds: float = 0.0, *, with_baselines: bool = True) -> DatasetSummary:
    lengths = [len(s.items) for s in dataset.sequences] or [0]
    seen = {i for s in dataset.sequences for i in s.items}
    split = leave_one_out(dataset)
    return DatasetSummary(
        name=dataset.name,
        n_items=dataset.n_items,
        n_users=dataset.n_users,
        n_interactions=dataset.n_interactions,
        n_profiles=len(dataset.users or {}),
        seq_len_mean=round(statistics.fmean(lengths), 2),
        seq_len_median=float(statistics.median(lengths)),
        seq_len_min=min(lengths),
        seq_len_max=max(lengths),
        items_in_no_sequence=dataset.n_items - len(seen),
        eval_users=len(split.test),
        load_seconds=round(load_seconds, 2),
        baselines=baselines(split) if with_baselines else {},
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Summarise a dataset folder and score model-free baselines.")
    ap.add_argument("data", help="dataset folder (items.jsonl, sequences.jsonl[, users.jsonl])")
    ap.add_argument("--allow-empty-titles", action="store_true")
    ap.add_argument("--no-baselines", action="store_true", help="counts only")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    try:
        ds = load_dataset(args.data, require_sequences=False, allow_empty_titles=args.allow_empty_titles)
    except DatasetError as exc:
        logger.error("%s", exc)
        return 2
    summary = summarize(ds, time.perf_counter() - t0, with_baselines=not args.no_baselines)
    out: dict[str, Any] = asdict(summary)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
