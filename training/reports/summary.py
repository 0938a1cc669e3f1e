"""The ``summary`` section of the results page: which model to serve, and how good it is.

One table per dataset, one row per model family (its best comparable configuration by test NDCG@10), the
published rows beside them, and the cold-vs-warm comparison of the fusion models (issue 21). Read from the
results folder's ``seqrec.json``, ``seqrec_runs.json``, ``generative.json`` and ``hybrid.json``; rows whose
counts or prior include evaluation-time histories (‡, ``prior_counts: histories``) never appear here: they
are not comparable to published numbers (the sequential section lists them in a table of their own).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.reports.labels import (
    DAGGER,
    MAX_LABEL,
    clip,
    fixed_epochs,
    genrec_long,
    genrec_short,
    seqrec_config,
    seqrec_is_dagger,
    seqrec_long,
)
from training.reports.page import write_section
from training.reports.seqrec import REFERENCES, minutes
from training.seqrec.registry import DATASETS, MC_SUFFIX
from training.seqrec.results import read_json, rows_path, runs_path

GENERATIVE_JSON = "generative.json"
HYBRID_JSON = "hybrid.json"

SERVED_MODEL = "fusion_norm"  # BuildConfig.seqrec: the dense model a build serves (dense is the default mode)
SERVED_MARK = "★"
# Sequential families: (table name, the model keys that belong to it).
SEQREC_FAMILIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Popularity", ("popularity",)),
    ("Item→next counts", ("transitions",)),
    ("SASRec", ("sasrec", "sasrec_profile")),
    ("Fusion", ("fusion", "fusion_profile")),
    (f"Fusion at one norm {SERVED_MARK}", (SERVED_MODEL,)),
    ("Text-only MoE", ("text_moe",)),
    ("PQ codes", ("pq_codes",)),
)
GEN_ALONE, GEN_PRIOR, HYBRID = "Generative alone", "Generative + prior", "Hybrid as served"
FAMILIES = (*(name for name, _ in SEQREC_FAMILIES), GEN_ALONE, GEN_PRIOR, HYBRID)

# Issue 21's team goals: cold Recall@10 as a share of warm, and the served warm Recall@10 at most 2% below
# the old fusion's warm Recall@10 in the same cold runs.
COLD_GOALS: dict[str, float] = {"Scientific": 0.5, "Beauty": 0.4}
WARM_TOLERANCE = 0.02


@dataclass(frozen=True)
class Cold:
    """Recall@10 on test cases whose target was hidden from training (cold) and on the others (warm)."""

    cold: float
    warm: float
    n_items: int
    runs: int

    @property
    def share(self) -> float | None:
        return self.cold / self.warm if self.warm > 0 else None

    def cell(self) -> str:
        share = self.share
        return f"{self.cold:.4f} / {self.warm:.4f}" + ("" if share is None else f" ({share:.0%})")


@dataclass(frozen=True)
class SummaryRow:
    family: str
    label: str  # at most MAX_LABEL characters
    recall: float
    ndcg: float
    std: float | None = None
    seeds: int = 1
    train: str = "–"
    prior: tuple[float, float] | None = None  # the same model + item→next prior (training counts)
    cold: Cold | None = None
    detail: str = ""


def cold_of(det: Mapping[str, Any]) -> Cold | None:
    """The cold / warm Recall@10 of a run-details entry (None when no cold run was made)."""
    c = det.get("cold") or {}
    if c.get("cold_recall@10") is None or c.get("warm_recall@10") is None:
        return None
    runs = len(c.get("runs", [])) or 1
    return Cold(float(c["cold_recall@10"]), float(c["warm_recall@10"]), int(c.get("n_cold_items", 0)), runs)


def _by_ndcg(row: Mapping[str, Any]) -> float:
    return float(row["ndcg@10"])


def _seqrec_detail(model: str, det: Mapping[str, Any], cold: Cold | None, prior_det: Mapping[str, Any]) -> str:
    cfg = det.get("config", {})
    text = seqrec_long(model)
    if cfg and model.removesuffix(MC_SUFFIX) not in ("popularity", "transitions"):
        text += (
            f"; hidden {cfg.get('hidden')}, {cfg.get('n_layers')} layers, lr {cfg.get('lr')}, batch "
            f"{cfg.get('batch_size')}, max length {cfg.get('max_len')}, "
        )
        if fixed_epochs(det.get("runs", [])):
            text += f"{cfg.get('epochs')} epochs per run (within a {cfg.get('max_minutes')}-min cap)"
        else:
            text += f"{cfg.get('max_minutes')}-min budget per run"
    if cold is not None:
        text += f"; cold runs: {cold.n_items} items hidden, {cold.runs} run{'s' if cold.runs > 1 else ''}"
    weights = sorted({x["markov_weight"] for x in prior_det.get("runs", []) if "markov_weight" in x})
    if weights:
        text += f"; prior weight {', '.join(f'{w:g}' for w in weights)} (picked on validation)"
    return text


def _counts(det: Mapping[str, Any]) -> str | None:
    return next((x.get("counts") for x in det.get("runs", []) if x.get("counts")), None)


def seqrec_rows(ds: str, rows: Sequence[Mapping[str, Any]], details: Mapping[str, Any]) -> list[SummaryRow]:
    """One row per sequential family with a comparable (non-‡) row on ``ds``: its best by test NDCG@10."""
    comparable = {
        r["model"]: r
        for r in rows
        if r["dataset"] == ds and not seqrec_is_dagger(details.get(f"{ds}/{r['model']}", {}).get("runs", []))
    }
    out = []
    for family, members in SEQREC_FAMILIES:
        found = [comparable[m] for m in members if m in comparable]
        if not found:
            continue
        best = max(found, key=_by_ndcg)
        model = best["model"]
        det = details.get(f"{ds}/{model}", {})
        with_prior = comparable.get(model + MC_SUFFIX)
        cold = cold_of(det)
        out.append(
            SummaryRow(
                family=family,
                label=clip(
                    seqrec_config(model, det.get("config", {}), _counts(det), fixed_epochs(det.get("runs", [])))
                ),
                recall=float(best["recall@10"]),
                ndcg=float(best["ndcg@10"]),
                std=best.get("std_recall@10"),
                seeds=len(best.get("seeds", [])) or 1,
                train=minutes(best.get("train_seconds")),
                prior=None if with_prior is None else (float(with_prior["recall@10"]), float(with_prior["ndcg@10"])),
                cold=cold,
                detail=_seqrec_detail(
                    model, det, cold, {} if with_prior is None else details.get(f"{ds}/{model}{MC_SUFFIX}", {})
                ),
            )
        )
    return out


def _uses_prior(row: Mapping[str, Any]) -> bool:
    return row.get("prior_weight") is not None or "trained with the item→next prior" in str(row.get("model", ""))


def _gen_dagger(row: Mapping[str, Any]) -> bool:
    return row.get("prior_counts") == "histories" or str(row.get("model", "")).endswith(DAGGER)


def _gen_row(family: str, row: Mapping[str, Any]) -> SummaryRow:
    device = "" if str(row.get("device", "cpu")) == "cpu" else f" ({row.get('device_name', 'GPU')})"
    return SummaryRow(
        family=family,
        label=genrec_short(row),
        recall=float(row["recall@10"]),
        ndcg=float(row["ndcg@10"]),
        train=minutes(row.get("train_seconds")) + device,
        detail=genrec_long(row),
    )


def generative_rows(ds: str, gen: Sequence[Mapping[str, Any]]) -> list[SummaryRow]:
    """The best generative row alone and with the prior (training counts) on ``ds``, by test NDCG@10."""
    mine = [r for r in gen if r.get("dataset") == ds and not _gen_dagger(r)]
    out = []
    for family, pick in ((GEN_ALONE, False), (GEN_PRIOR, True)):
        found = [r for r in mine if _uses_prior(r) is pick]
        if found:
            out.append(_gen_row(family, max(found, key=_by_ndcg)))
    return out


def hybrid_rows(ds: str, hybrid: Sequence[Mapping[str, Any]], gen: Sequence[Mapping[str, Any]]) -> list[SummaryRow]:
    """Hybrid mode as served (weights tuned on validation) on ``ds``; none when its prior counted histories."""
    found = [h for h in hybrid if h.get("dataset") == ds and h.get("prior_counts") != "histories" and "hybrid" in h]
    if not found:
        return []
    h = max(found, key=lambda e: float(e["hybrid"]["test"]["ndcg@10"]))
    w = h["hybrid"].get("weights", {})
    dense = h.get("dense", {})
    gen_model = h.get("generative", {}).get("model")
    gen_s = next((r.get("train_seconds") for r in gen if r.get("model") == gen_model), None)
    dense_s = dense.get("train_seconds")
    train, split = "–", ""
    if dense_s is not None:
        train = minutes(float(dense_s) + float(gen_s or 0.0)) + ("" if gen_s else " (dense)")
        split = f"train time: dense {minutes(dense_s)}" + (f" + generative {minutes(gen_s)}; " if gen_s else "; ")
    detail = split + (
        f"dense: {h.get('dense_model', 'served seqrec')}; generative: {gen_model}; weights prior "
        f"{w.get('prior', 0):g}, generative {w.get('generative', 0):g}, genrec prior "
        f"{h['hybrid'].get('genrec_prior_weight', 0):g} (picked on validation NDCG@10); prior counts "
        f"`{h.get('prior_counts', 'train')}`; {h.get('test_cases', '?')} test cases"
    )
    return [
        SummaryRow(
            family=HYBRID,
            label=clip(f"dense + prior {w.get('prior', 0):g}, gen {w.get('generative', 0):g}"),
            recall=float(h["hybrid"]["test"]["recall@10"]),
            ndcg=float(h["hybrid"]["test"]["ndcg@10"]),
            seeds=1,
            train=train,
            detail=detail + (f". {h['note']}" if h.get("note") else ""),
        )
    ]


def dataset_rows(
    ds: str,
    rows: Sequence[Mapping[str, Any]],
    details: Mapping[str, Any],
    gen: Sequence[Mapping[str, Any]],
    hybrid: Sequence[Mapping[str, Any]],
) -> list[SummaryRow]:
    """Every family's summary row on ``ds``, in :data:`FAMILIES` order; families without a row are left out."""
    return [*seqrec_rows(ds, rows, details), *generative_rows(ds, gen), *hybrid_rows(ds, hybrid, gen)]


def _dagger_families(
    ds: str,
    rows: Sequence[Mapping[str, Any]],
    details: Mapping[str, Any],
    gen: Sequence[Mapping[str, Any]],
    hybrid: Sequence[Mapping[str, Any]],
) -> set[str]:
    """The families that have a ‡ row on ``ds``."""
    dagger = {
        r["model"].removesuffix(MC_SUFFIX)
        for r in rows
        if r["dataset"] == ds and seqrec_is_dagger(details.get(f"{ds}/{r['model']}", {}).get("runs", []))
    }
    out = {family for family, members in SEQREC_FAMILIES if dagger & set(members)}
    out |= {GEN_PRIOR for r in gen if r.get("dataset") == ds and _gen_dagger(r)}
    return out | {HYBRID for h in hybrid if h.get("dataset") == ds and h.get("prior_counts") == "histories"}


def omitted_line(ds: str, have: Sequence[SummaryRow], dagger: set[str]) -> str:
    """A line naming the families left out on ``ds`` (and which of them have only ‡ rows)."""
    present = {r.family for r in have}
    missing = [f for f in FAMILIES if f not in present]
    if not missing:
        return ""
    only_dagger = [f for f in missing if f in dagger]
    unmeasured = [f for f in missing if f not in dagger]
    text = f"Not measured on {ds}: {', '.join(unmeasured)}." if unmeasured else ""
    if only_dagger:
        text += f" Only ‡ rows (see the sections below): {', '.join(only_dagger)}."
    return text.strip()


def _fmt_r10(row: SummaryRow) -> str:
    return f"{row.recall:.4f}" + ("" if row.std is None else f" ± {row.std:.4f}")


def dataset_table(ds: str, have: Sequence[SummaryRow]) -> list[str]:
    """The summary table of one dataset: our rows, then the published rows."""
    lines = [
        "| model family | configuration | R@10 | N@10 | + item→next prior R@10 / N@10 | seeds | train time "
        "| cold R@10 / warm (share) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in have:
        family = f"**{r.family}**" if SERVED_MARK in r.family else r.family
        prior = "–" if r.prior is None else f"{r.prior[0]:.4f} / {r.prior[1]:.4f}"
        cold = "–" if r.cold is None else r.cold.cell()
        lines.append(
            f"| {family} | {r.label} | {_fmt_r10(r)} | {r.ndcg:.4f} | {prior} | {r.seeds} | {r.train} | {cold} |"
        )
    for name, _r5, _n5, r10, n10 in REFERENCES.get(ds, []):
        if "published" in name and not (math.isnan(r10) or math.isnan(n10)):
            lines.append(f"| *{name}* | paper | {r10:.4f} | {n10:.4f} | – | – | – | – |")
    return lines


def cold_warm_table(datasets: Sequence[str], details: Mapping[str, Any]) -> list[str]:
    """Issue 21: the old fusion against the served fusion at one norm, cold vs warm Recall@10, goals met."""
    lines = [
        "| dataset | model | cold R@10 | warm R@10 | cold share of warm | hidden items, runs | goal |",
        "|---|---|---|---|---|---|---|",
    ]
    unmeasured = []
    for ds in datasets:
        old = cold_of(details.get(f"{ds}/fusion", {}))
        new = cold_of(details.get(f"{ds}/{SERVED_MODEL}", {}))
        if old is None and new is None:
            unmeasured.append(ds)
            continue
        for name, c in (("Fusion", old), (f"Fusion at one norm {SERVED_MARK}", new)):
            if c is None:
                continue
            goal = _goal(ds, c, old) if c is new else "(before)"
            share = "–" if c.share is None else f"{c.share:.0%}"
            lines.append(f"| {ds} | {name} | {c.cold:.4f} | {c.warm:.4f} | {share} | {c.n_items}, {c.runs} | {goal} |")
    if unmeasured:
        lines += ["", f"No cold runs yet: {', '.join(unmeasured)}."]
    return lines


def _goal(ds: str, new: Cold, old: Cold | None) -> str:
    target = COLD_GOALS.get(ds)
    if target is None:
        return "no goal set"
    share = new.share or 0.0
    text = f"cold ≥ {target:.0%} of warm: {'met' if share >= target else 'missed'}"
    if old is not None and old.warm > 0:
        delta = new.warm / old.warm - 1.0
        verdict = "met" if delta >= -WARM_TOLERANCE else "missed"
        text += f"; warm {delta:+.1%} vs fusion (≥ −{WARM_TOLERANCE:.0%}): {verdict}"
    return text


INTRO = (
    "## Which model to serve, and how good is it",
    "",
    "Rendered by `recsvc-train report` from `docs/results/seqrec.json`, `seqrec_runs.json`, `generative.json` "
    "and `hybrid.json`. One row per model family: its best comparable configuration by test NDCG@10 (the full "
    "grids are in the sections below and in the JSON). Recall@10 ± the sample std over seeds; train time per "
    "run on this shared 2-core CPU machine (one torch thread) unless a GPU is named. `+ item→next prior`: the "
    "same trained model ranked with the item→next prior counted on the training sequences. Cold R@10 / warm: "
    "a separate run with 10% of the items hidden from training; Recall@10 on test cases whose target is such "
    "an item, against the others. "
    f"{SERVED_MARK} **served**: the dense model a build ships (`BuildConfig.seqrec`; `dense` is the default "
    "mode, with the item→next prior added). Rows whose counts or prior include evaluation-time histories (‡) "
    "are left out here: they are not comparable to published numbers. Families with no row on a dataset are "
    f"omitted, not filled in. Labels are at most {MAX_LABEL} characters; each row's full configuration is under "
    "*Details* below.",
    "",
)


def render_markdown(
    rows: Sequence[Mapping[str, Any]],
    details: Mapping[str, Any],
    gen: Sequence[Mapping[str, Any]],
    hybrid: Sequence[Mapping[str, Any]],
) -> str:
    """The ``summary`` section from the parsed JSON results."""
    named = {r["dataset"] for r in rows} | {r.get("dataset") for r in gen} | {h.get("dataset") for h in hybrid}
    datasets = [*DATASETS, *sorted(str(d) for d in named - set(DATASETS) if d)]
    lines = list(INTRO)
    detail_lines: list[str] = []
    for ds in datasets:
        have = dataset_rows(ds, rows, details, gen, hybrid)
        dagger = _dagger_families(ds, rows, details, gen, hybrid)
        lines += [f"### {ds}", ""]
        if not have and not dagger:
            lines += ["Not run yet.", ""]
            continue
        lines += [*dataset_table(ds, have), ""] if have else []
        lines += [omitted_line(ds, have, dagger), ""]
        detail_lines += [f"- {ds} · {r.family} (`{r.label}`): {r.detail}" for r in have if r.detail]
    lines += [
        "### New items: cold vs warm (issue 21)",
        "",
        "The old fusion (ID + W·text) against the served fusion at one norm, in the same cold runs (10% of items "
        "hidden from training and from the softmax). Goals: cold Recall@10 ≥ 50% of warm on Scientific and ≥ 40% "
        f"on Beauty, with warm Recall@10 at most {WARM_TOLERANCE:.0%} below the old fusion's.",
        "",
        *cold_warm_table(datasets, details),
        "",
        "### Details",
        "",
        *detail_lines,
    ]
    return "\n".join(lines).rstrip() + "\n"


def render(results_dir: Path | str, page: Path | str) -> Path:
    """Rebuild the ``summary`` section of ``page`` from the JSON files in ``results_dir``."""
    results_dir = Path(results_dir)
    rows = read_json(rows_path(results_dir), [])
    details = read_json(runs_path(results_dir), {})
    gen = read_json(results_dir / GENERATIVE_JSON, [])
    hybrid = read_json(results_dir / HYBRID_JSON, [])
    return write_section("summary", render_markdown(rows, details, gen, hybrid), page)
