"""The ``generative`` section of the results page, rendered from ``generative.json`` (the quality rows of
``recsvc-train bench-genrec``), ``generative_beam.json`` (``python -m benchmarks.beam --json``) and
``hybrid.json`` (``bench-genrec --hybrid``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.reports import GENERATIVE_BEAM_JSON, GENERATIVE_JSON, HYBRID_JSON
from training.reports.page import RESULTS_DIR, write_section

RESULTS_JSON = RESULTS_DIR / GENERATIVE_JSON
BEAM_JSON = RESULTS_DIR / GENERATIVE_BEAM_JSON
HYBRID_RESULTS_JSON = RESULTS_DIR / HYBRID_JSON  # bench-genrec --hybrid (HybridOptions.out)
# Published TIGER (Rajput et al. 2023), leave-one-out, full catalog: Recall@10 / NDCG@10.
TIGER_PUBLISHED = {"Beauty": (0.0648, 0.0384), "Sports": (0.0400, 0.0225)}


def write_generative_section(
    results_json: Path, beam_json: Path, results_md: Path, hybrid_json: Path = HYBRID_RESULTS_JSON
) -> None:
    """(Re)write the ``generative`` section of the results page from the JSON files."""
    rows = json.loads(results_json.read_text()) if results_json.is_file() else []
    beam = json.loads(beam_json.read_text()) if beam_json.is_file() else None  # a run or a list of runs
    hybrid = json.loads(hybrid_json.read_text()) if hybrid_json.is_file() else []
    write_section("generative", render_section(rows, beam, hybrid), results_md)


PRIOR_LABEL = "item→next prior"  # in the model label of every row decoded with the prior


def _best_rows(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Per dataset, the best row (NDCG@10) of each kind: the generative model alone, decoded with the
    prior counted on the training sequences, and with the ‡ prior; the prior alone beside them."""
    out: list[str] = []
    kinds = (
        ("the generative model alone", lambda m: PRIOR_LABEL not in m),
        ("with the prior (training counts)", lambda m: PRIOR_LABEL in m and not m.endswith("‡")),
        ("with the prior ‡", lambda m: m.endswith("‡")),
    )
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        parts = []
        for name, keep in kinds:
            cands = [r for r in rows if r["dataset"] == dataset and keep(r["model"])]
            if not cands:
                continue
            b = max(cands, key=lambda r: r["ndcg@10"])
            alone = f" (the prior alone {_alone_cell(b)})" if "prior_alone_recall@10" in b else ""
            parts.append(f"{name} {b['recall@10']:.4f} / {b['ndcg@10']:.4f}{alone}")
        pub = TIGER_PUBLISHED.get(dataset)
        ref = f"; published TIGER {pub[0]:.4f} / {pub[1]:.4f}" if pub else ""
        out.append(f"- {dataset}, best Recall@10 / NDCG@10 by NDCG@10: " + "; ".join(parts) + ref + ".")
    return ["", *out] if out else []


def _alone_cell(r: dict[str, Any]) -> str:
    """The prior alone: full ranking, then through the beam (rows from before that figure: full only)."""
    cell = f"{r['prior_alone_recall@10']:.4f} / {r['prior_alone_ndcg@10']:.4f}"
    if "prior_beam_recall@10" in r:
        cell += f"; in the beam {r['prior_beam_recall@10']:.4f} / {r['prior_beam_ndcg@10']:.4f}"
    return cell


def _guided(b: dict[str, Any]) -> str:
    """The prior-guided decoding cell of a beam benchmark run (runs from before it: -)."""
    if "prior_guided_per_s" not in b:
        return "-"
    return f"{b['prior_guided_per_s']} ({b['prior_guided_cost']:.2f}x the time)"


def _device_label(r: dict[str, Any]) -> str:
    device = str(r.get("device", "cpu"))
    if device.startswith("cpu"):
        return f"cpu, {r.get('threads', '-')} thread(s)"
    return str(r.get("device_name", device))


def render_section(
    rows: Sequence[dict[str, Any]],
    beam: dict[str, Any] | Sequence[dict[str, Any]] | None = None,
    hybrid: Sequence[dict[str, Any]] = (),
) -> str:
    lines = [
        "## Generative recommendation (semantic IDs + TIGER-style T5)",
        "",
        "Command: `make results-genrec` (`recsvc-train bench-genrec --data ../shared/data/Beauty --config"
        " training/configs/genrec_beauty.yaml --threads 1 --cf-dim 64`; rows in `docs/results/generative.json`);"
        " Sports:"
        " `--data ../shared/data/Sports --config training/configs/genrec_sports.yaml`. The CPU configs have the"
        " encoder read one position per history item (`history_input: items`, the sum of the item's sid token"
        " embeddings; 2.8x the training steps/s on Beauty, `make bench-genrec-train`) where TIGER reads one per"
        " sid token; rows without `one encoder position per item` ran with `--history-input tokens`, and CPU rows"
        " without a note with 300 validation users and patience 3 (the earlier configs). Both inputs of a dataset"
        " use the same semantic IDs (same RQ-VAE seed). `item ID input`: a learned vector per trained item added"
        " to its encoder position (`--item-id-input`; new items go in by their sid tokens alone), `(started from"
        " the coded vectors)`: those vectors start as the top principal components of what the RQ-VAE coded"
        " instead of at random (`--item-id-init vectors`); `cosine to 0 over E epochs`: `--lr-schedule cosine`"
        " with `--epochs E`; `user token"
        " (N buckets)`: TIGER's hashed user id before the history (an option removed for no gain:"
        " docs/EXPERIMENTS.md). `sids from text +"
        " co-occurrence (N)`: the RQ-VAE coded each text vector followed by a rank-N PPMI-SVD vector of the item's"
        " co-occurrence in the training sequences (`--cf-dim N`); other rows code the text vectors alone, as TIGER"
        " does. `distilled from the dense model (λ l, top K, T t)`: trained with l × the per-level KL to the"
        " served dense model's top-K softmax (temperature t) along the target's prefix added to the loss (the"
        " dense model fitted on the same training sequences first; `--distill-weight`, `training/genrec/distill.py`,"
        " docs/EXPERIMENTS.md). `+ item→next prior (weight w)`: the same trained model as the row without it,"
        " decoded with the"
        " first-order item -> next item prior of `service/core/transitions.py` steering the beam at every level"
        " (prior-guided decoding, `service/semantic_ids/beam.py`: final score log p_model + w log p_prior; no"
        " retraining; `--prior-weights`, w picked on validation NDCG@10); the prior counts the training"
        " sequences, or with ‡ everything known at evaluation time (for test also each user's validation item,"
        " `--prior-counts histories`, as the ‡ rows of the sequential table). `prior alone`: the same prior"
        " ranking the full catalog by itself, on the same test cases, and `in the beam`: the prior alone decoded"
        " by the same constrained beam (the row's width, constant model logits, `prior_beam_metrics`), which drops some"
        " items a full ranking keeps; the prior-guided row minus that is what the generative model adds inside"
        " the decoder the service runs."
        " `trained with the item→next prior (weight w)`: the model trained as the second expert next to that"
        " prior (an option removed for no gain: docs/EXPERIMENTS.md): at each sid level the loss is the"
        " cross-entropy of softmax(logits +"
        " w log prior mass of each child code) over the valid codes, the prior counted on the training"
        " sequences with the predicted transition left out; every decode of such a model (its plain row"
        " included) is the renormalised prior-guided beam (`renormalize` in `beam.py`) with the training"
        " counts, so its rows compare with the `+ item→next prior` rows, not with the model alone.",
        "Leave-one-out, full catalog; the target's rank is its position in the constrained beam search's top-10",
        "(not returned = miss). Published TIGER numbers are from the paper (richer item text than here).",
        "`train s` = RQ-VAE + genrec training wall-clock on the listed device (CPU rows: that many threads of",
        "this 2-core machine, shared with other jobs); `budget` = training stopped by its time budget, not by",
        "early stopping. GPU rows ran on a lent machine through the device tool (`--config"
        " training/configs/genrec_gpu.yaml --device cuda`, text vectors computed on the CPU and passed with"
        " `--vectors-from`).",
        "",
        "| dataset | model | Recall@10 | NDCG@10 | unique 3-code prefix | epochs | stop | train s | device"
        " | prior alone R@10 / N@10 (full ranking; in the beam) | TIGER R@10 / N@10 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        pub = TIGER_PUBLISHED.get(r["dataset"])
        ref = f"{pub[0]:.4f} / {pub[1]:.4f}" if pub else "-"
        label = f"{r['model']} ({r['note']})" if r.get("note") else r["model"]
        alone = _alone_cell(r) if "prior_alone_recall@10" in r else "-"
        lines.append(
            f"| {r['dataset']} | {label} | {r['recall@10']:.4f} | {r['ndcg@10']:.4f} | "
            f"{r['unique_prefix_share']:.4f} | {r.get('epochs', '-')} | {r.get('stop_reason', '-')} | "
            f"{r['train_seconds']:.0f} | {_device_label(r)} | {alone} | {ref} |"
        )
    lines += _best_rows(rows)
    lines += render_hybrid(hybrid)
    runs = [beam] if isinstance(beam, dict) else list(beam or [])
    if runs:
        lines += [
            "",
            "Constrained beam search, command: `make bench-beam` (`python -m benchmarks.beam --json`,"
            " `docs/results/generative_beam.json`, one run per device; the GPU row is"
            " `python -m benchmarks.beam --json --device cuda --threads 4 --out docs/results/generative_beam.json`"
            " on a lent machine): our batched decoder vs Hugging Face `generate` with"
            " `prefix_allowed_tokens_fn`, same T5 weights and catalog. `prior-guided`: the same batched search"
            " guided by a per-request item log-prior (given; `prior_guided_cost` = its time / the plain search's).",
            "",
            "`encoder input`: `tokens` = one encoder position per sid token (TIGER), `items` = one per history"
            " item (the sum of its token embeddings; `GenRecConfig.history_input`).",
            "",
            "| device | threads | encoder input | items | batch x beam | batched req/s | generate req/s | speedup |"
            " speedup without the shared encoder pass | same top-k | prior-guided req/s (cost) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for b in runs:
            lines.append(
                f"| {b['device']} | {b['threads']} | {b.get('history_input', 'tokens')} | {b['items']} |"
                f" {b['batch']} x {b['beam']} |"
                f" {b['batched_per_s']} | {b['reference_per_s']} | {b['speedup']}x |"
                f" {b.get('decode_speedup_excl_encoder', '-')}x | {b['same_topk']} | {_guided(b)} |"
            )
    return "\n".join(lines)


# Published rows on the same protocol (../shared/data/README.md): R@5, N@5, R@10, N@10.
PUBLISHED = {
    "Beauty": {"SASRec": (0.0387, 0.0249, 0.0605, 0.0318), "TIGER": (0.0454, 0.0321, 0.0648, 0.0384)},
    "Sports": {"SASRec": (0.0233, 0.0154, 0.0350, 0.0192), "TIGER": (0.0264, 0.0181, 0.0400, 0.0225)},
}


def render_hybrid(entries: Sequence[dict[str, Any]]) -> list[str]:
    """The hybrid subsection of the generative section: one table per dataset entry."""
    if not entries:
        return []
    lines = [
        "",
        "### Hybrid mode, as served (`recsvc-train bench-genrec --hybrid`; `docs/results/hybrid.json`)",
        "",
        "Dense, generative and hybrid scored on the same leave-one-out split and the same test cases"
        " (full catalog, history not excluded: a request with `exclude_history: false`). `dense`: the sequential"
        " model the build serves (`BuildConfig.seqrec`: ID + W·text fusion, items at one norm, the served cold-ID"
        " rule) trained by the same job, full ranking; `+ item→next prior`: the served dense ranking"
        " u·v + w log p(j | last), w picked on validation. `generative`: the genrec model of the same run (rows"
        " above). `hybrid`: the service's own merge (`service/recommender/hybrid.py: merge_and_rescore`, the"
        " function `Recommender._hybrid` calls) over the pool the service builds: the dense top 50 by dot"
        " product, the beam's top 20 (prior-guided with the genrec's picked weight) and, with a prior weight, the"
        " last item's successors; score u·v + w_prior log p(j | last) + w_gen (beam score − the request's"
        " lowest). The two weights are picked on validation NDCG@10 over a grid (`val cases` validation users,"
        " seeded sample), then scored once on test; `hybrid, weights 0` is the merge with both weights at 0 (the"
        " dense score alone orders the pool). Priors count what `prior counts` says (`train`: the training"
        " sequences only, comparable with the published rows).",
    ]
    for e in entries:
        ds = e["dataset"]
        h = e["hybrid"]
        w = h["weights"]
        lines += [
            "",
            f"{ds}: {e['test_cases']} test cases, {e['val_cases']} validation cases,"
            f" prior counts `{e['prior_counts']}`,"
            f" seed {e['seed']}; dense model {e['dense']['epochs']} epochs (best {e['dense']['best_epoch']},"
            f" {e['dense']['train_seconds']:.0f} s, budget {e['dense']['budget_minutes']:g} min); evaluation"
            f" {e['eval_seconds']:.0f} s. Command: `{e['command']}`." + (f" {e['note']}" if e.get("note") else ""),
            "",
            "| model | R@5 | N@5 | R@10 | N@10 | tuned on validation |",
            "|---|---|---|---|---|---|",
        ]

        def row(name: str, m: dict[str, float], tuned: str = "-") -> str:
            return (
                f"| {name} | {m['recall@5']:.4f} | {m['ndcg@5']:.4f} | {m['recall@10']:.4f} | {m['ndcg@10']:.4f}"
                f" | {tuned} |"
            )

        lines.append(row("dense (served seqrec)", e["dense"]["test"]))
        if e.get("dense_prior"):
            dp = e["dense_prior"]
            lines.append(row(f"dense + item→next prior (weight {dp['weight']:g})", dp["test"], "prior weight"))
        lines.append(row("generative", e["generative"]["test"]))
        if e.get("generative_prior"):
            lines.append(row("generative + item→next prior", e["generative_prior"]["test"], "prior weight"))
        lines.append(row("hybrid, weights 0", h["unweighted"]["test"]))
        lines.append(
            row(
                f"**hybrid** (prior {w['prior']:g}, generative {w['generative']:g}; genrec prior"
                f" {h['genrec_prior_weight']:g})",
                h["test"],
                f"both weights (val N@10 {h['val']['ndcg@10']:.4f})",
            )
        )
        for name, (r5, n5, r10, n10) in PUBLISHED.get(ds, {}).items():
            lines.append(f"| *{name} (published)* | {r5:.4f} | {n5:.4f} | {r10:.4f} | {n10:.4f} | - |")
    return lines
