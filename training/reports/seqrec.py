"""The ``seqrec`` section of the results page and its plot, rendered from ``seqrec.json`` and
``seqrec_runs.json``."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from service.core.transitions import PriorShape
from training.reports.labels import DAGGER, seqrec_is_dagger, seqrec_long, seqrec_short
from training.reports.page import write_section
from training.seqrec.registry import BASELINES, DATASETS
from training.seqrec.results import read_json, rows_path, runs_path

logger = logging.getLogger(__name__)


REFERENCES: dict[str, list[tuple[str, float, float, float, float]]] = {
    "Beauty": [
        # Not published: the ID-only calibration of issue 7 (this machine, 15 min on 2 cores, R@5/N@5 not given);
        # our ID-only row has to reach it before a fusion gain counts.
        ("SASRec ID-only calibration (issue 7)", float("nan"), float("nan"), 0.0737, 0.0388),
        ("SASRec (published)", 0.0387, 0.0249, 0.0605, 0.0318),
        ("S3-Rec (published)", 0.0387, 0.0244, 0.0647, 0.0327),
        ("TIGER (published)", 0.0454, 0.0321, 0.0648, 0.0384),
    ],
    "Sports": [
        ("SASRec (published)", 0.0233, 0.0154, 0.0350, 0.0192),
        ("TIGER (published)", 0.0264, 0.0181, 0.0400, 0.0225),
    ],
}


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.4f}"


def minutes(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds:.1f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def _short_history_table(ds: str, rows: Sequence[dict[str, Any]], details: dict[str, Any]) -> list[str]:
    """Recall@10 / NDCG@10 of the models whose runs all carry ``test_short``, per history length."""
    table: list[tuple[str, dict[str, tuple[float, float]], int]] = []
    lengths: set[str] = set()
    for r in rows:
        runs = details.get(f"{ds}/{r['model']}", {}).get("runs", [])
        if not runs or not all("test_short" in x for x in runs):
            continue
        common: set[str] = set.intersection(*(set(x["test_short"]) for x in runs))
        means: dict[str, tuple[float, float]] = {}
        for k in common:
            r10 = float(np.mean([x["test_short"][k]["recall@10"] for x in runs]))
            n10 = float(np.mean([x["test_short"][k]["ndcg@10"] for x in runs]))
            means[k] = (r10, n10)
        table.append((seqrec_short(r["model"]), means, len(runs)))
        lengths |= common
    if not table:
        return []
    ks = sorted(lengths, key=int)
    head = " | ".join(f"last {k} item{'s' if int(k) > 1 else ''}: R@10 / N@10" for k in ks)
    out = [
        "",
        f"Short histories ({ds}): the same trained models, each test history cut to its last K items "
        "(profile models still get the user's profile); means over the row's seeds.",
        "",
        f"| model | seeds | {head} |",
        "|---|---|" + "---|" * len(ks),
    ]
    for label, means, n in table:
        cells = " | ".join(f"{_fmt(means[k][0])} / {_fmt(means[k][1])}" if k in means else "–" for k in ks)
        out.append(f"| {label} | {n} | {cells} |")
    return out


PROTOCOL = (
    "Protocol: leave-one-out per user (last item = test, second to last = validation), full ranking over "
    "all items, no sampled negatives; **history items not excluded**. Early stopping on validation NDCG@10; "
    "test metrics of the best validated epoch. Values are means over the listed seeds; ± is the sample "
    "std of Recall@10 over seeds (– with one seed). Train time is wall-clock training (with the per-epoch "
    "validation) per run on this "
    "2-core CPU machine, one torch thread, with other jobs sharing the machine. Cold R@10: a separate "
    "run with a seeded share of items hidden from training (ID rows untrained, absent from training "
    "sequences), Recall@10 on the test cases whose target is such an item (– for models without text), warm "
    "on the others. "
    "Fusion models are scored as served: an item without a trained ID row borrows the scaled ID row of its "
    "nearest trained item by text (`cold_id_*` in the config; in the run details); *zero ID rows* (in the "
    "details) is the same model with those rows left at zero (the text part alone). "
    "*Fusion at one norm*: every item representation (ID + W·text, or the text part alone for an item "
    "without a trained ID row) is scaled to L2 norm 4 in training and serving (`item_norm`), so cold and "
    "trained items are scored on one scale; its cold items borrow the mean ID row of their 10 nearest trained "
    "items by text (softmax(cosine / 0.1) weights, unscaled). "
    "Rows marked *+ item→next prior* rank the same trained model by its log-softmax plus weight x "
    "log p(next | last history item), the add-one-smoothed first-order transition counts of the training "
    "sequences (`service/core/transitions.py`), weight picked on validation NDCG@10 (no extra training); "
    "the weight and, where one was picked, the wider prior shape (pairs up to that many positions apart, "
    "weight decay^(offset-1), reversed pairs x backward; p mixing the last few history items) are under "
    "*Details*. "
    "‡ rows (the counting model or prior counts everything known at evaluation time, `prior_counts: "
    "histories`: the training sequences for validation and, for test, the same plus each user's validation "
    "item) are not comparable to published numbers: they are in their own table at the end of this section; "
    "the per-dataset tables count the training sequences only."
)
DAGGER_TITLE = "‡ rows: prior counts include evaluation-time histories — not comparable to published numbers"


def _runs(ds: str, r: dict[str, Any], details: dict[str, Any]) -> list[dict[str, Any]]:
    return list(details.get(f"{ds}/{r['model']}", {}).get("runs", []))


def _cold_cell(r: dict[str, Any], det: dict[str, Any]) -> str:
    cold = det.get("cold") or {}
    if r.get("cold_recall@10") is None or not cold:
        return _fmt(r.get("cold_recall@10"))
    return f"{_fmt(r.get('cold_recall@10'))} (warm {cold['warm_recall@10']:.4f})"


def _row_line(r: dict[str, Any], det: dict[str, Any], with_dataset: bool = False) -> str:
    runs = det.get("runs", [])
    epochs = ", ".join(f"{x['epochs']} ({x['best_epoch']})" for x in runs if x["epochs"]) or "–"
    r10 = _fmt(r["recall@10"]) + ("" if r["std_recall@10"] is None else f" ± {r['std_recall@10']:.4f}")
    budget = det.get("config", {}).get("max_minutes") if r["model"] not in BASELINES else None
    train_s = minutes(r["train_seconds"]) + ("" if budget is None else f" (budget {budget:g} min)")
    head = f"| {r['dataset']} " if with_dataset else ""
    label = seqrec_short(r["model"]) + (f" {DAGGER}" if with_dataset else "")
    return (
        f"{head}| {label} | {_fmt(r['recall@5'])} | {r10} | {_fmt(r['ndcg@5'])} | {_fmt(r['ndcg@10'])} | "
        f"{len(r['seeds'])} ({', '.join(map(str, r['seeds']))}) | {train_s} | {epochs} | {_cold_cell(r, det)} |"
    )


def _row_detail(ds: str, r: dict[str, Any], det: dict[str, Any], dagger: bool) -> str:
    """The full description of one row: the model's long label, the picked prior, the cold runs ("" when the
    short label says it all)."""
    runs = det.get("runs", [])
    short, long = seqrec_short(r["model"]), seqrec_long(r["model"])
    text = ""
    weights = sorted({x["markov_weight"] for x in runs if "markov_weight" in x})
    if weights:
        chosen = {PriorShape.from_dict(x.get("markov_shape")) for x in runs if "markov_weight" in x}
        wide = sorted(sh.label for sh in chosen if not sh.first_order)
        shapes = f"; {'; '.join(wide)}" + ("; or first-order" if len(wide) < len(chosen) else "") if wide else ""
        text += f"; prior weight {', '.join(f'{w:g}' for w in weights)}{shapes}"
    cold = det.get("cold") or {}
    if cold and r.get("cold_recall@10") is not None:
        n_runs = len(cold.get("runs", [])) or 1
        zero = cold.get("zero_id_rows") or {}
        text += f"; cold: {cold['n_cold_items']} items hidden" + (f", {n_runs} runs" if n_runs > 1 else "")
        text += f", zero ID rows cold R@10 {_fmt(zero.get('cold_recall@10'))}" if zero else ""
    if not text and long == short:
        return ""
    return f"- {ds} · {short}{f' {DAGGER}' if dagger else ''}: {long}{text}"


def _dataset_block(ds: str, ours: Sequence[dict[str, Any]], details: dict[str, Any]) -> list[str]:
    """One dataset's table of comparable rows, its published rows and its short-history table."""
    refs = REFERENCES.get(ds, [])
    lines = [f"### {ds}", ""]
    if not ours:
        lines += ["Not run yet.", ""]
        if not refs:
            return lines
    lines.append("| model | R@5 | R@10 | N@5 | N@10 | seeds | train time | epochs (best) | cold R@10 |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    lines += [_row_line(r, details.get(f"{ds}/{r['model']}", {})) for r in ours]
    for name, r5, n5, r10f, n10 in refs:
        cells = " | ".join("–" if math.isnan(v) else f"{v:.4f}" for v in (r5, r10f, n5, n10))
        lines.append(f"| *{name}* | {cells} | – | – | – | – |")
    lines += _short_history_table(ds, ours, details)
    if refs:
        lines.append("")
        lines.append(
            "Published rows: `../shared/data/README.md` (same protocol; those papers had full titles, brand, "
            "price and category as item text, these datasets only short keyword names)."
            + (
                " The calibration row is the ID-only SASRec measured on this machine when issue 7 was filed "
                "(hidden 64, 2 layers, lr 3e-3, batch 128, max length 50, 15 min on 2 cores)."
                if any("calibration" in ref[0] for ref in refs)
                else ""
            )
        )
    lines.append("")
    return lines


def render_markdown(rows: Sequence[dict[str, Any]], details: dict[str, Any], plot: str | None) -> str:
    """The ``seqrec`` section of docs/RESULTS.md from the JSON rows and run details."""
    lines = [
        "## Sequential recommendation",
        "",
        "Command: `recsvc-train bench-seqrec --data ../shared/data/<dataset> --models ... --seeds ... --update-docs` "
        "(one dataset per call; rows are merged into `docs/results/seqrec.json`, per-run details in "
        "`docs/results/seqrec_runs.json`; without `--update-docs` they go to `--out`, default `var/results`; "
        "`recsvc-train report` rebuilds this page from the JSON).",
        "",
        PROTOCOL,
        "",
    ]
    by_ds: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_ds.setdefault(r["dataset"], []).append(r)
    daggered: list[dict[str, Any]] = []
    notes: list[str] = []
    for ds in [*DATASETS, *sorted(set(by_ds) - set(DATASETS))]:
        ours = [r for r in by_ds.get(ds, []) if not seqrec_is_dagger(_runs(ds, r, details))]
        daggered += [r for r in by_ds.get(ds, []) if seqrec_is_dagger(_runs(ds, r, details))]
        lines += _dataset_block(ds, ours, details)
        notes += [_row_detail(ds, r, details.get(f"{ds}/{r['model']}", {}), False) for r in ours]
    if daggered:
        lines += [f"### {DAGGER_TITLE}", ""]
        lines.append("| dataset | model | R@5 | R@10 | N@5 | N@10 | seeds | train time | epochs (best) | cold R@10 |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        lines += [_row_line(r, details.get(f"{r['dataset']}/{r['model']}", {}), True) for r in daggered]
        lines.append("")
        notes += [_row_detail(r["dataset"], r, details.get(f"{r['dataset']}/{r['model']}", {}), True) for r in daggered]
    if plot:
        lines += [f"![Recall@10 and NDCG@10 per dataset]({plot})", ""]
    notes = [n for n in notes if n]
    if notes:
        lines += ["### Details", "", *notes]
    return "\n".join(lines).rstrip() + "\n"


def render_plot(rows: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """Grouped bars of test Recall@10 / NDCG@10 per dataset and model (published rows hatched).

    Returns None (and logs) when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no plot written (pip install matplotlib)")
        return None
    datasets = [d for d in DATASETS if any(r["dataset"] == d for r in rows)]
    datasets += sorted({r["dataset"] for r in rows} - set(DATASETS))
    if not datasets:
        return None
    fig, axes = plt.subplots(2, len(datasets), figsize=(4.2 * len(datasets), 6.5), squeeze=False)
    for col, ds in enumerate(datasets):
        ours = [r for r in rows if r["dataset"] == ds]
        refs = REFERENCES.get(ds, [])
        for row_i, (metric, ref_i) in enumerate((("recall@10", 3), ("ndcg@10", 4))):
            ax = axes[row_i][col]
            names = [seqrec_short(r["model"]) for r in ours]
            vals = [float(r[metric]) for r in ours]
            errs = [float(r["std_recall@10"] or 0.0) if metric == "recall@10" else 0.0 for r in ours]
            names += [ref[0] for ref in refs]
            vals += [float(ref[ref_i]) for ref in refs]
            errs += [0.0] * len(refs)
            bars = ax.barh(range(len(vals)), vals, xerr=errs, color="tab:blue")
            for b in list(bars)[len(ours) :]:
                b.set_color("lightgray")
                b.set_hatch("//")
            ax.set_yticks(range(len(vals)), names, fontsize=7)
            ax.invert_yaxis()
            ax.set_title(f"{ds}: test {metric}", fontsize=9)
            ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


PLOT_FILE = "seqrec.png"


def render(results_dir: Path | str, page: Path | str) -> Path:
    """Rebuild the plot (``<results_dir>/seqrec.png``) and the ``seqrec`` section of ``page`` from the JSON
    files in ``results_dir``."""
    results_dir, md_path = Path(results_dir), Path(page)
    rows = read_json(rows_path(results_dir), [])
    details = read_json(runs_path(results_dir), {})
    comparable = [r for r in rows if not seqrec_is_dagger(_runs(r["dataset"], r, details))]  # no ‡ bars
    plot_path = render_plot(comparable, results_dir / PLOT_FILE)
    rel_plot = None
    if plot_path is not None:
        rel_plot = Path(os.path.relpath(plot_path.resolve(), md_path.resolve().parent)).as_posix()
    return write_section("seqrec", render_markdown(rows, details, rel_plot), md_path)
