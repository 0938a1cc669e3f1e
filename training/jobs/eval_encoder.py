"""Held-out title -> document retrieval: the quality measure of the text encoder.

Items are split by id into train / validation / test *before* any training
(:func:`split_items`). For each test item the query is its title
(``service.core.items.query_text``) and the relevant candidate is its own document
(``document_text(item, include_title=False)``: brand, categories, features,
description). Two candidate pools:

* ``catalog``: the documents of every catalog item with a description -- what a
  service faces, and the pool the issue's goal is stated on;
* ``test``: the test items' documents only (easy: an encoder that merely separates
  a few hundred items already scores high there).

Metrics: Recall@10, NDCG@10 (``training.metrics``: rank = number of candidates
scoring strictly higher) and MRR. Document vectors are cached on disk keyed by the
model weights, the max length and the texts, because encoding ~3.4k long
documents takes minutes on a 2-core CPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.core.items import Item, document_text, query_text
from training.metrics import metrics_from_ranks, target_ranks
from training.models.text_encoder import TextEncoder, base_model_dir, encode_texts, load_tokenizer

logger = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path("var/cache/encoder")
SPLIT_FILE = "split.json"
POOLS = ("catalog", "test")
K = 10


# ------------------------------------------------------------------ split


@dataclass(frozen=True)
class ItemSplit:
    """Item ids on each side of the held-out split (in catalog order)."""

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    seed: int
    train_fraction: float
    val_fraction: float

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = asdict(self)
        data = {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}
        path.write_text(json.dumps(data))
        return path

    @classmethod
    def load(cls, path: Path) -> ItemSplit:
        data = json.loads(Path(path).read_text())
        return cls(
            train=tuple(data["train"]),
            val=tuple(data["val"]),
            test=tuple(data["test"]),
            seed=int(data["seed"]),
            train_fraction=float(data["train_fraction"]),
            val_fraction=float(data["val_fraction"]),
        )


def _unit_hash(seed: int, item_id: str) -> float:
    """A uniform number in [0, 1) fixed by (seed, item id) alone."""
    digest = hashlib.sha256(f"{seed}:{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_items(item_ids: Sequence[str], train_fraction: float, val_fraction: float, seed: int) -> ItemSplit:
    """Assign each id to train / val / test by a seeded hash of the id.

    Stable: an item's side depends only on (seed, id), never on the other items,
    so adding items to a catalog never moves an existing one across the split.
    """
    if not (0.0 < train_fraction < 1.0 and 0.0 <= val_fraction < 1.0 and train_fraction + val_fraction < 1.0):
        raise ValueError(
            f"need 0 < train_fraction < 1, 0 <= val_fraction and a positive test share; "
            f"got train {train_fraction}, val {val_fraction}"
        )
    if len(set(item_ids)) != len(item_ids):
        raise ValueError("item ids must be unique to split by id")
    train: list[str] = []
    val: list[str] = []
    test: list[str] = []
    for iid in item_ids:
        u = _unit_hash(seed, iid)
        (train if u < train_fraction else val if u < train_fraction + val_fraction else test).append(iid)
    return ItemSplit(tuple(train), tuple(val), tuple(test), seed, train_fraction, val_fraction)


# ------------------------------------------------------------------ pairs


def has_pair(item: Item) -> bool:
    """An item gives a (title, document) pair when it has a title and a description."""
    return bool(item.title.strip()) and bool(item.description.strip())


def pair_texts(items: Sequence[Item]) -> tuple[list[str], list[str]]:
    """(queries, documents) of ``items``: title and document without the title."""
    return [query_text(it) for it in items], [document_text(it, include_title=False) for it in items]


# ------------------------------------------------------------------ metrics


def retrieval_metrics(queries: np.ndarray, docs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Recall@10, NDCG@10 and MRR of unit ``queries`` [Q, H] against ``docs`` [N, H]; targets [Q] index docs."""
    if queries.shape[0] == 0:
        raise ValueError("no queries to evaluate")
    ranks = np.concatenate(
        [
            target_ranks(queries[s : s + 1024] @ docs.T, targets[s : s + 1024])  # scores [b, N]
            for s in range(0, queries.shape[0], 1024)
        ]
    )
    m = metrics_from_ranks(ranks, (K,))
    return {f"recall@{K}": m[f"recall@{K}"], f"ndcg@{K}": m[f"ndcg@{K}"], "mrr": float((1.0 / (ranks + 1.0)).mean())}


# ------------------------------------------------------------------ cached encoding


def model_fingerprint(model_dir: Path | None) -> str:
    """Hash of a model folder's config and weight files (``None`` -> the base model)."""
    path = Path(model_dir) if model_dir is not None else base_model_dir()
    h = hashlib.sha256()
    files = sorted(p for p in path.iterdir() if p.name == "config.json" or p.suffix in (".safetensors", ".bin"))
    if not files:
        raise FileNotFoundError(f"no config or weights in {path}")
    for p in files:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def texts_fingerprint(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def encode_cached(
    model: TextEncoder,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    model_key: str,
    max_length: int,
    batch_size: int = 64,
    cache_dir: Path | None = DEFAULT_CACHE_DIR,
    progress: bool = True,
) -> np.ndarray:
    """``encode_texts`` with an on-disk cache keyed by model, max length and texts. -> [N, H]"""
    path: Path | None = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{model_key}-L{max_length}-{texts_fingerprint(texts)}.npy"
        if path.is_file():
            vecs = np.load(path)
            if vecs.shape[0] == len(texts):
                logger.info("loaded %d cached vectors from %s", len(texts), path)
                return vecs
    t0 = time.perf_counter()
    vecs = encode_texts(model, tokenizer, texts, batch_size=batch_size, max_length=max_length, progress=progress)
    dt = time.perf_counter() - t0
    logger.info("encoded %d texts (max_length %d) in %.1fs (%.1f/s)", len(texts), max_length, dt, len(texts) / dt)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".tmp.npy")
        np.save(tmp, vecs)
        tmp.replace(path)
    return vecs


# ------------------------------------------------------------------ held-out evaluation


@dataclass
class PoolResult:
    pool: str
    metrics: dict[str, float]
    n_test_items: int
    n_candidates: int


def evaluate_heldout(
    items: Sequence[Item],
    split: ItemSplit,
    model_dir: Path | None,
    *,
    max_length: int = 256,
    query_max_length: int = 32,
    batch_size: int = 64,
    cache_dir: Path | None = DEFAULT_CACHE_DIR,
    device: str = "cpu",
) -> list[PoolResult]:
    """Title -> document retrieval for the test items of ``split`` with the encoder in ``model_dir``."""
    with_pair = [it for it in items if has_pair(it)]
    if not with_pair:
        raise ValueError("no item has both a title and a description: nothing to evaluate")
    test_ids = set(split.test)
    test_items = [it for it in with_pair if it.item_id in test_ids]
    if not test_items:
        raise ValueError("the split's test side has no item with a description")
    model = TextEncoder.from_pretrained(model_dir).to(torch.device(device))
    tokenizer = load_tokenizer(model_dir)
    key = model_fingerprint(model_dir)
    _, docs = pair_texts(with_pair)
    doc_vecs = encode_cached(
        model, tokenizer, docs, model_key=key, max_length=max_length, batch_size=batch_size, cache_dir=cache_dir
    )  # [N, H]
    queries, _ = pair_texts(test_items)
    q_vecs = encode_texts(model, tokenizer, queries, batch_size=batch_size, max_length=query_max_length)  # [Q, H]
    pos = {it.item_id: i for i, it in enumerate(with_pair)}
    catalog_targets = np.array([pos[it.item_id] for it in test_items], dtype=np.int64)  # [Q]
    out = [PoolResult("catalog", retrieval_metrics(q_vecs, doc_vecs, catalog_targets), len(test_items), len(docs))]
    test_docs = doc_vecs[catalog_targets]  # [Q, H], test item i's document is row i
    out.append(
        PoolResult(
            "test",
            retrieval_metrics(q_vecs, test_docs, np.arange(len(test_items), dtype=np.int64)),
            len(test_items),
            len(test_items),
        )
    )
    for r in out:
        logger.info(
            "%s pool (%d queries, %d candidates): %s",
            r.pool,
            r.n_test_items,
            r.n_candidates,
            ", ".join(f"{k} {v:.4f}" for k, v in r.metrics.items()),
        )
    return out


# ------------------------------------------------------------------ results command


RESULTS_JSON = "encoder.json"
DOWNSTREAM_JSON = "encoder_downstream.json"
COLLISIONS_JSON = "encoder_collisions.json"  # semantic-ID collision rate per encoder (encoder-collisions)
RUN_INFO_JSON = "encoder_run.json"  # train_info.json of the run behind encoder.json (config, history for the plot)
PLOT_FILE = "encoder.png"
GOAL = (0.92, 0.80)  # issue 6: catalog-pool Recall@10 and NDCG@10 on held-out Industrial items


def _merge_rows(path: Path, new: list[dict[str, Any]], key: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows of ``path`` whose ``key`` values no new row has, plus ``new`` (other runs' rows survive)."""
    old: list[dict[str, Any]] = json.loads(path.read_text()) if path.is_file() else []
    fresh = {tuple(r[k] for k in key) for r in new}
    return [r for r in old if tuple(r.get(k) for k in key) not in fresh] + new


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
    for metric, style in ((f"recall@{K}", "o-"), ("mrr", "s--")):
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
        "--config training/configs/encoder/industrial.yaml`.",
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
            "finetuned=var/encoder/Industrial/model --seq-minutes 3 --seeds 0,1,2` (Scientific rows) and "
            "`recsvc-train encoder-downstream --data ../shared/data/Beauty --encoder "
            "behaviour=var/encoder/Beauty-behaviour/model --seq-models text_moe,id+text --seq-epochs 2 "
            "--seq-minutes 90 --seeds 0` (Beauty rows; the same with "
            "`--no-base --encoder finetuned=var/encoder/Industrial/model` "
            "for the Industrial-tuned encoder: an epoch cap instead of a wall-clock budget, so encoders compare at "
            "equal training steps on a CPU shared with other jobs); each run rewrites this section. Leave-one-out "
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
            "finetuned=var/encoder/Industrial/model --seeds 0,1,2`. The RQ-VAE of `training/jobs/semantic_ids.py` "
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


def write_encoder_results(
    data_dir: Path,
    run_dir: Path,
    *,
    max_length: int = 256,
    query_max_length: int = 32,
    batch_size: int = 64,
    device: str = "cpu",
    model_name: str = "finetuned",
    results_dir: Path = Path("docs/results"),
    results_doc: Path = Path("docs/RESULTS.md"),
    cache_dir: Path | None = DEFAULT_CACHE_DIR,
    base_model_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """Evaluate base and the run's fine-tuned encoder on the run's held-out split; write json, plot, RESULTS.

    ``base_model_dir``: the model the run started from (``None``: all-MiniLM-L6-v2).
    """
    from training.data.loader import load_dataset

    info_path = run_dir / "train_info.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"{info_path} not found: run `recsvc-train finetune-encoder --out {run_dir}` first")
    info = json.loads(info_path.read_text())
    ds = load_dataset(data_dir, require_sequences=False, allow_empty_titles=True)
    split = ItemSplit.load(run_dir / SPLIT_FILE)
    rows: list[dict[str, Any]] = []
    models = (("base", base_model_dir, 0.0), (model_name, run_dir / "model", info["train_seconds"]))
    for name, model_dir, seconds in models:
        for r in evaluate_heldout(
            ds.items,
            split,
            model_dir,
            max_length=max_length,
            query_max_length=query_max_length,
            batch_size=batch_size,
            cache_dir=cache_dir,
            device=device,
        ):
            rows.append(
                {
                    "dataset": ds.name,
                    "model": name,
                    "pool": r.pool,
                    "recall@10": round(r.metrics[f"recall@{K}"], 4),
                    "ndcg@10": round(r.metrics[f"ndcg@{K}"], 4),
                    "mrr": round(r.metrics["mrr"], 4),
                    "n_test_items": r.n_test_items,
                    "n_candidates": r.n_candidates,
                    "train_seconds": seconds,
                }
            )
    results_dir.mkdir(parents=True, exist_ok=True)
    all_rows = _merge_rows(results_dir / RESULTS_JSON, rows, ("dataset", "model", "pool"))
    (results_dir / RESULTS_JSON).write_text(json.dumps(all_rows, indent=2) + "\n")
    (results_dir / RUN_INFO_JSON).write_text(json.dumps(info, indent=2) + "\n")
    plot_validation(
        info["history"], results_dir / PLOT_FILE, f"{ds.name}: validation title->document retrieval during fine-tuning"
    )
    render_encoder_section(results_dir, results_doc)
    logger.info("wrote %s, %s and the encoder section of %s", results_dir / RESULTS_JSON, PLOT_FILE, results_doc)
    return rows


def render_encoder_section(
    results_dir: Path = Path("docs/results"), results_doc: Path = Path("docs/RESULTS.md")
) -> Path:
    """Rewrite the ``encoder`` section of the results page from the JSON files under ``results_dir``:
    held-out retrieval (``encoder.json`` + the run's ``encoder_run.json``), downstream rows and collision rows.
    Every encoder command calls this after writing its JSON, so each regenerates the whole section."""
    from training.results_doc import write_section

    def read(name: str, default: Any) -> Any:
        path = results_dir / name
        return json.loads(path.read_text()) if path.is_file() else default

    md = render_markdown(
        read(RESULTS_JSON, []), read(DOWNSTREAM_JSON, []), read(RUN_INFO_JSON, {}), read(COLLISIONS_JSON, [])
    )
    return write_section("encoder", md, results_doc)
