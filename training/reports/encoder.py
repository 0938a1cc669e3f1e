"""The ``encoder`` section of the results page and its plot, rendered from the JSON files of the
encoder commands (``encoder-results``, ``encoder-downstream``, ``encoder-collisions``): held-out
retrieval (``encoder.json`` + the run's ``encoder_run.json``, whose validation history is plotted),
downstream rows and collision rows."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.reports.page import write_section

logger = logging.getLogger(__name__)


RESULTS_JSON = "encoder.json"


DOWNSTREAM_JSON = "encoder_downstream.json"


COLLISIONS_JSON = "encoder_collisions.json"  # semantic-ID collision rate per encoder (encoder-collisions)


RUN_INFO_JSON = "encoder_run.json"  # train_info.json of the run behind encoder.json (config, history for the plot)


PLOT_FILE = "encoder.png"


GOAL = (0.92, 0.80)  # issue 6: catalog-pool Recall@10 and NDCG@10 on held-out Industrial items


def plot_validation(history: Sequence[dict[str, Any]], path: Path, title: str) -> Path | None:
    """Validation Recall@10 and MRR against optimizer steps (matplotlib, headless)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is a dev dependency
        logger.warning("matplotlib not installed; no plot written")
        return None
    steps = [int(h["step"]) for h in history if h.get("val")]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    for metric, style in (("recall@10", "o-"), ("mrr", "s--")):
        ax.plot(steps, [h["val"][metric] for h in history if h.get("val")], style, label=f"validation {metric}")
    ax.set_xlabel("optimizer steps")
    ax.set_ylabel("score")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def render_markdown(
    rows: Sequence[dict[str, Any]],
    downstream: Sequence[dict[str, Any]],
    info: dict[str, Any],
    collisions: Sequence[dict[str, Any]] = (),
) -> str:
    cfg = info.get("config", {})
    lines = [
        "## Text encoder: contrastive fine-tuning (title -> document)",
        "",
        "Regenerate: `recsvc-train finetune-encoder --data ../shared/data/Industrial "
        "--config training/configs/encoder/industrial.yaml --out var/encoder/Industrial` then "
        "`recsvc-train encoder-results --data ../shared/data/Industrial --run var/encoder/Industrial "
        "--config training/configs/encoder/industrial.yaml --update-docs` (without `--update-docs` the rows go to "
        "`--out`, default `var/results`, and this page is left alone).",
        "",
        f"Held-out items (split by id {cfg.get('train_fraction')}/{cfg.get('val_fraction')}/rest, seed "
        f"{cfg.get('split_seed')}): query = title of a test item, candidates = documents (brand, categories, "
        f"features, description; no title) of every catalog item with a description (`catalog`) or of the "
        f"test items only (`test`). Documents truncated at {cfg.get('eval_doc_max_length')} tokens, titles at "
        f"{cfg.get('query_max_length')}. `train_seconds` = wall-clock of fine-tuning on this machine "
        f"({info.get('threads')} torch thread, CPU shared with other jobs).",
        "",
        "| dataset | model | pool | Recall@10 | NDCG@10 | MRR | test items | candidates | train s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    if not rows and not info:  # no held-out run yet (e.g. only downstream / collision rows): no empty table
        lines = [*lines[:4], "No held-out evaluation written yet (`encoder-results`)."]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['model']} | {r['pool']} | {_fmt(r['recall@10'])} | {_fmt(r['ndcg@10'])} | "
            f"{_fmt(r['mrr'])} | {r['n_test_items']} | {r['n_candidates']} | {float(r['train_seconds']):.0f} |"
        )
    for r in rows:
        if r["model"] != "base" and r["pool"] == "catalog":
            reached = r["recall@10"] >= GOAL[0] and r["ndcg@10"] >= GOAL[1]
            lines += [
                "",
                f"Team goal on the `catalog` pool: Recall@10 >= {GOAL[0]} and NDCG@10 >= {GOAL[1]}; "
                f"{r['dataset']} / {r['model']}: {'reached' if reached else 'not reached'} "
                f"({r['recall@10']:.4f} / {r['ndcg@10']:.4f}).",
            ]
    if info:
        lines += [
            "",
            f"Fine-tuning of this run: {info.get('loss')}; AdamW lr {cfg.get('lr')}, weight decay "
            f"{cfg.get('weight_decay')}, linear warmup {cfg.get('warmup_ratio')} then linear decay; batch "
            f"{cfg.get('batch_size')} pairs (chunks of {cfg.get('chunk_size')}, gradient caching "
            f"{'on' if cfg.get('grad_cache') else 'off'}); embeddings + {cfg.get('freeze_layers')} bottom layers "
            "frozen; "
            f"training documents at {cfg.get('doc_max_length')} tokens; {info.get('n_train_pairs')} training pairs "
            f"({info.get('n_without_description')} items without description skipped, "
            f"{info.get('n_excluded_by_title')} removed because their title is in "
            f"`{cfg.get('exclude_titles_from') or '-'}`), {info.get('epochs')} epochs / {info.get('steps')} "
            f"steps ({info.get('stop_reason')}), best validation epoch {info.get('best_epoch')} (kept).",
            "",
            f"Validation (epoch selection by MRR, and the plot): {info.get('n_val_pairs')} validation titles against "
            f"{info.get('n_val_candidates')} documents (theirs plus {cfg.get('val_distractors')} training documents), "
            f"documents at {cfg.get('doc_max_length')} tokens; step 0 is the base model.",
            "",
            f"![validation recall against steps](results/{PLOT_FILE})",
        ]
    if downstream:
        lines += [
            "",
            "### Downstream: sequential recommendation with base vs fine-tuned item vectors",
            "",
            "Regenerate: `recsvc-train encoder-downstream --data ../shared/data/Scientific --encoder "
            "finetuned=var/encoder/Industrial/model --seq-minutes 3 --seeds 0,1,2 --update-docs` (Scientific rows) and "
            "`recsvc-train encoder-downstream --data ../shared/data/Beauty --encoder "
            "behaviour=var/encoder/Beauty-behaviour/model --seq-models text_moe,id+text --seq-epochs 2 "
            "--seq-minutes 90 --seeds 0 --update-docs` (Beauty rows; the same with "
            "`--no-base --encoder finetuned=var/encoder/Industrial/model` "
            "for the Industrial-tuned encoder: an epoch cap instead of a wall-clock budget, so encoders compare at "
            "equal training steps on a CPU shared with other jobs); each `--update-docs` run rewrites this section. "
            "Leave-one-out "
            "test, full ranking; mean ± std over the listed seeds; every sequential model trained for at most "
            "`min` minutes (1 torch thread, early stopping on validation NDCG@10), `epochs` = epochs it ran. "
            "`id+text` = the served fusion model (ID + W·text; bench-seqrec's `fusion`), `text` = no ID "
            "embeddings (item = W·text), `text_moe` = text only through a whitening mixture-of-experts adaptor "
            "(UniSRec style; the most sensitive to the vectors). Item text = `item_text` at 128 tokens "
            "(`--max-length`). "
            "Encoder `objective`: `metadata` = title <-> description pairs (Industrial), `behaviour` = item texts "
            "of consecutive items in the dataset's own leave-one-out training sequences; `encoder train s` = its "
            "fine-tuning wall-clock (1 torch thread, shared CPU).",
            "",
            "Rows `<seq model>, N% cold` hide a seeded share of the items from training (another draw per "
            "seed, `--cold-frac`); `cold R@10` is Recall@10 on the test cases whose target is such an item "
            "(known by its text alone; `id+text` gives it the ID row of its nearest trained item by text, as "
            "served), `warm` on the others.",
            "",
            "| dataset | encoder | objective | encoder train s | seq model | Recall@10 | NDCG@10 | seeds | min "
            "| epochs | cold R@10 (warm) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in downstream:
            sd = f" ± {r['recall@10_std']:.4f}" if "recall@10_std" in r else ""
            sn = f" ± {r['ndcg@10_std']:.4f}" if "ndcg@10_std" in r else ""
            metrics = f"{_fmt(r['recall@10'])}{sd} | {_fmt(r['ndcg@10'])}{sn}"
            objective = str(r.get("encoder_objective", "-")).split(" ")[0]
            seeds = ",".join(str(x) for x in r.get("seeds", []))
            minutes = r.get("seq_minutes", "-")
            train_s = r.get("encoder_train_seconds")
            train_cell = f"{float(train_s):.0f}" if isinstance(train_s, (int, float)) else "-"
            epochs = ",".join(str(x) for x in r.get("epochs", []))
            cold = "–"
            if r.get("cold_recall@10") is not None:
                cold = f"{_fmt(r['cold_recall@10'])} ({_fmt(r.get('warm_recall@10'))})"
            cells = [
                r["dataset"],
                r["encoder"],
                objective,
                train_cell,
                r["seq_model"],
                metrics,
                seeds,
                minutes,
                epochs,
                cold,
            ]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        base_rows = {(r["dataset"], r["seq_model"]): r for r in downstream if r["encoder"] == "base"}
        verdicts = []
        for r in downstream:
            b = base_rows.get((r["dataset"], r["seq_model"]))
            if r["encoder"] == "base" or b is None or not b["ndcg@10"]:
                continue
            change = (r["ndcg@10"] - b["ndcg@10"]) / b["ndcg@10"]
            verdicts.append(
                f"{r['dataset']} `{r['seq_model']}`: {r['encoder']} {'above' if change > 0 else 'not above'} "
                f"base (NDCG@10 {r['ndcg@10']:.4f} vs {b['ndcg@10']:.4f}, {change:+.0%})"
            )
        if verdicts:
            lines += [
                "",
                "Against the base encoder (compare gaps with the ± columns; one seed has no spread): "
                + "; ".join(verdicts)
                + ".",
            ]
    if collisions:
        lines += [
            "",
            "### Semantic-ID collisions per encoder",
            "",
            "Regenerate: `recsvc-train encoder-collisions --data ../shared/data/Scientific --encoder "
            "finetuned=var/encoder/Industrial/model --seeds 0,1,2 --update-docs`. "
            "The RQ-VAE of `training/semantic_ids/build.py` "
            "(`SemanticIdConfig` defaults) is trained on each encoder's item vectors (`item_text`, 128 tokens); "
            "collision rate = share of items whose codes (all RQ-VAE levels, i.e. the semantic ID before its "
            "collision digit) are shared with another item: with nearest-codeword codes, and after "
            "`balance_last_level` (distinct last codes inside each group sharing the earlier codes; what "
            "the build stores). Lower is better: fewer items need the collision digit to be told apart. "
            "Mean ± std over RQ-VAE seeds.",
            "",
            "| dataset | encoder | items | layout | collision rate (nearest) | collision rate (balanced last level) "
            "| codebook usage per level | seeds |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in collisions:
            usage = " / ".join(f"{u:.2f}" for u in r.get("codebook_usage", []))
            lines.append(
                f"| {r['dataset']} | {r['encoder']} | {r['n_items']} | {r['layout']} | "
                f"{r['collision_rate']:.4f} ± {r['collision_rate_std']:.4f} | "
                f"{r['collision_rate_balanced']:.4f} ± {r['collision_rate_balanced_std']:.4f} | {usage} | "
                f"{','.join(str(x) for x in r['seeds'])} |"
            )
    return "\n".join(lines) + "\n"


def render(results_dir: Path | str, page: Path | str) -> Path:
    """Rewrite the ``encoder`` section of ``page`` (and the validation plot ``<results_dir>/encoder.png``) from
    the JSON files under ``results_dir``: held-out retrieval (``encoder.json`` + the run's ``encoder_run.json``),
    downstream rows and collision rows."""
    results_dir = Path(results_dir)

    def read(name: str, default: Any) -> Any:
        path = results_dir / name
        return json.loads(path.read_text()) if path.is_file() else default

    info = read(RUN_INFO_JSON, {})
    if info.get("history"):
        title = f"{info.get('dataset')}: validation title->document retrieval during fine-tuning"
        plot_validation(info["history"], results_dir / PLOT_FILE, title)
    md = render_markdown(read(RESULTS_JSON, []), read(DOWNSTREAM_JSON, []), info, read(COLLISIONS_JSON, []))
    return write_section("encoder", md, page)
