"""Constrained beam search throughput: our batched decoder vs Hugging Face ``generate``
with ``prefix_allowed_tokens_fn`` (what public TIGER re-implementations use), on the
same T5 weights, the same catalog and the same histories.

    python -m benchmarks.beam --json [--quick] [--device cuda] [--artifacts artifacts/<version>]

Without ``--artifacts`` (or with a set that has no genrec model) a randomly initialised
genrec T5 (``GenRecConfig`` defaults, encoder input from ``--history-input``) is used, and
without ``--artifacts`` a random catalog of ``--items`` unique semantic IDs (3 levels x 256
codes + collision digit); throughput does not depend on the weights.
Prints one JSON object: ``batched_per_s`` and ``reference_per_s`` (requests/s),
``speedup``, ``device``, ``same_topk`` (every request's top-k item list identical) and
the largest score difference; ``prior_guided_per_s`` / ``prior_guided_cost`` time the same
batched search guided by an item log-prior (prior-guided decoding; the prior given, not computed).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.core.manifest import Manifest
from service.core.sid import HISTORY_INPUTS, SidLayout, SidSpec, SidTable, load_semantic_ids
from service.features import GENERATIVE, has_feature
from service.features.generative import semantic_ids_spec
from service.semantic_ids.beam import beam_search
from service.semantic_ids.decoder import (
    encoder_inputs,
    history_input,
    load_genrec,
    model_history_tokens,
    step_for,
)
from service.semantic_ids.prefix_index import PrefixIndex
from training.loop import device_name, resolve_device

logger = logging.getLogger("benchmarks.beam")


def random_sids(n: int, layout: SidLayout, seed: int) -> np.ndarray:
    """n unique semantic IDs with a skewed first level (real catalogs are uneven)."""
    rng = np.random.default_rng(seed)
    k = layout.codebook_size
    p0 = rng.dirichlet(np.full(k, 0.5))
    codes = np.stack(
        [rng.choice(k, size=n, p=p0), rng.integers(0, k, n), rng.integers(0, k, n)][: layout.n_levels], axis=1
    )
    return SidTable.from_codes(codes, layout).sids


def allowed_tokens_fn(item_tokens: np.ndarray, depth: int) -> Callable[[int, torch.Tensor], list[int]]:
    """The usual TIGER-style callback: a dict from decoded prefix to the allowed next tokens."""
    table: dict[tuple[int, ...], set[int]] = {}
    for row in item_tokens.tolist():
        for t in range(depth):
            table.setdefault(tuple(row[:t]), set()).add(row[t])
    allowed = {k: sorted(v) for k, v in table.items()}

    def fn(batch_id: int, input_ids: torch.Tensor) -> list[int]:
        prefix = tuple(input_ids[1:].tolist())  # drop the decoder start token
        return allowed.get(prefix, [])

    return fn


def _sids_and_model(args: argparse.Namespace, device: torch.device) -> tuple[SidLayout, np.ndarray, Any, Path | None]:
    """The semantic IDs and genrec model of ``--artifacts`` (or random sids and a random model)."""
    if args.artifacts:
        root = Path(args.artifacts)
        manifest = Manifest.read(root)
        sid: SidSpec | None
        if has_feature(GENERATIVE, manifest):  # the set's semantic IDs and generative model
            gen = GENERATIVE.spec(manifest)
            sid, model_dir = gen.semantic_ids, root / gen.genrec.dir
        else:  # semantic IDs without a model: a random model decodes over them
            sid, model_dir = semantic_ids_spec(manifest), None
        if sid is None:
            raise ValueError(f"artifact set {root} has no semantic_ids section")
        spec, table, _ = load_semantic_ids(root, sid.to_dict())
        layout, sids = spec.layout, table.sids
    else:
        layout = SidLayout(3, 256, 32)
        sids = random_sids(args.items, layout, args.seed)
        model_dir = None
    model: Any
    if model_dir is not None:
        model = load_genrec(model_dir, device)
    else:
        from training.config import GenRecConfig
        from training.models.genrec import build_genrec

        # A random model without the item-ID table (the defaults' item_id_input needs trained items).
        cfg = GenRecConfig(history_input=args.history_input, item_id_input=False)
        model = build_genrec(layout, cfg, seed=args.seed)
        model = model.to(device).eval()
    if model.config.vocab_size != layout.vocab_size:
        raise ValueError(f"model vocab {model.config.vocab_size} does not match the sid layout ({layout.vocab_size})")
    return layout, sids, model, model_dir


def timed(f: Callable[[], tuple[np.ndarray, np.ndarray]], reps: int) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
    """Seconds per call of ``f`` over ``reps`` calls after one warm-up call, and the last result."""
    res = f()  # warm-up
    t0 = time.perf_counter()
    for _ in range(reps):
        res = f()
    return (time.perf_counter() - t0) / reps, res


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    t_setup = time.perf_counter()
    layout, sids, model, model_dir = _sids_and_model(args, device)
    n = len(sids)
    tokens = layout.to_tokens(sids)  # [N, depth]
    index = PrefixIndex(sids, layout, device)
    rng = np.random.default_rng(args.seed + 1)
    histories = [rng.integers(0, n, args.history).tolist() for _ in range(args.batch)]
    ids, mask = model_history_tokens(model, tokens, histories, args.history)
    setup_s = time.perf_counter() - t_setup

    def batched() -> tuple[np.ndarray, np.ndarray]:
        step = step_for(model, ids, mask, device)
        res = beam_search(step, index, args.batch, args.beam, args.k)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return res.items.cpu().numpy(), res.scores.cpu().numpy()

    # Prior-guided decoding: a per-request item log-prior [B, N] (random here; the service's comes from
    # the transition counts). Timed without computing the prior itself, so the difference is the
    # decoder's part: the prefix mass tables and the per-level bias.
    log_prior = torch.from_numpy(rng.normal(0, 3, (args.batch, n)).astype(np.float32)).to(device)

    def guided() -> tuple[np.ndarray, np.ndarray]:
        step = step_for(model, ids, mask, device)
        res = beam_search(step, index, args.batch, args.beam, args.k, log_prior=log_prior, prior_weight=1.0)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return res.items.cpu().numpy(), res.scores.cpu().numpy()

    fn = allowed_tokens_fn(tokens, layout.depth)
    leaf = {tuple(r): i for i, r in enumerate(tokens.tolist())}
    ids_t = torch.from_numpy(ids).to(device)
    mask_t = torch.from_numpy(mask).long().to(device)

    def reference() -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            out = model.generate(
                **encoder_inputs(model, ids_t),
                attention_mask=mask_t,
                num_beams=args.beam,
                num_return_sequences=args.k,
                max_new_tokens=layout.depth,
                min_new_tokens=layout.depth,
                prefix_allowed_tokens_fn=fn,
                do_sample=False,
                length_penalty=0.0,
                early_stopping=False,
                output_scores=True,
                return_dict_in_generate=True,
            )
        seqs = out.sequences[:, 1 : 1 + layout.depth].cpu().numpy().reshape(args.batch, args.k, layout.depth)
        items = np.array([[leaf.get(tuple(s), -1) for s in row] for row in seqs])
        scores = out.sequences_scores.cpu().numpy().reshape(args.batch, args.k)
        return items, scores

    def encoder_only() -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            model.get_encoder()(**encoder_inputs(model, ids_t), attention_mask=mask_t)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return np.zeros(0), np.zeros(0)

    e_s, _ = timed(encoder_only, args.reps)
    b_s, (b_items, b_scores) = timed(batched, args.reps)
    logger.info("batched: %.3fs per batch of %d", b_s, args.batch)
    g_s, _ = timed(guided, args.reps)
    logger.info("batched, prior-guided: %.3fs per batch of %d", g_s, args.batch)
    r_s, (r_items, r_scores) = timed(reference, args.ref_reps)
    logger.info("generate + prefix_allowed_tokens_fn: %.3fs per batch of %d", r_s, args.batch)
    same = bool((b_items == r_items).all())
    same_share = float((b_items == r_items).all(axis=1).mean())
    top_k_eval = min(10, args.k)
    same10 = float(np.mean([set(b_items[i, :top_k_eval]) == set(r_items[i, :top_k_eval]) for i in range(args.batch)]))
    finite = np.isfinite(b_scores) & np.isfinite(r_scores)
    return {
        "batched_per_s": round(args.batch / b_s, 2),
        "reference_per_s": round(args.batch / r_s, 2),
        "speedup": round(r_s / b_s, 2),
        "device": device_name(device),
        "same_topk": same,
        "same_topk_share": same_share,
        "same_top10_set_share": same10,
        "max_score_diff": float(np.abs(b_scores[finite] - r_scores[finite]).max()) if finite.any() else None,
        "batch": args.batch,
        "beam": args.beam,
        "k": args.k,
        "items": n,
        "history_items": args.history,
        "model": str(model_dir) if model_dir else "random genrec T5 (GenRecConfig defaults)",
        "model_params": int(sum(p.numel() for p in model.parameters())),
        "history_input": history_input(model),
        "threads": args.threads,
        "batched_s_per_batch": round(b_s, 4),
        # The T5 encoder pass over the histories is the same work in both; without it:
        "encoder_s_per_batch": round(e_s, 4),
        "decode_speedup_excl_encoder": round((r_s - e_s) / max(b_s - e_s, 1e-9), 2),
        "reference_s_per_batch": round(r_s, 4),
        # The same batched search guided by an item log-prior (prior given): its cost relative to plain.
        "prior_guided_per_s": round(args.batch / g_s, 2),
        "prior_guided_cost": round(g_s / b_s, 3),
        "setup_s": round(setup_s, 2),
        "quick": args.quick,
    }


def save_run(path: Path, run: dict[str, Any]) -> list[dict[str, Any]]:
    """Write ``run`` into the JSON list of runs at ``path``, one run per device and encoder input
    (``history_input``): a run on another device (the CPU here, a GPU on a lent machine) is kept beside it."""
    runs: list[dict[str, Any]] = []
    if path.is_file():
        old = json.loads(path.read_text())
        runs = [old] if isinstance(old, dict) else list(old)

    def key(r: dict[str, Any]) -> tuple[str, str]:
        return str(r.get("device")), str(r.get("history_input", "tokens"))  # runs without the key: token input

    runs = [r for r in runs if key(r) != key(run)] + [run]
    runs.sort(key=lambda r: (key(r)[0] != "cpu", key(r)[0], key(r)[1] != "tokens"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(runs, indent=2) + "\n")
    return runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print one JSON object (default: also one summary line)")
    p.add_argument("--quick", action="store_true", help="fewer repetitions (under a minute on 2 cores)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--artifacts", default=None, help="artifact set folder: its sid table (+ genrec model when present)")
    p.add_argument("--items", type=int, default=12_000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--beam", type=int, default=20)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--history", type=int, default=20, help="history items per request")
    p.add_argument("--reps", type=int, default=None)
    p.add_argument("--ref-reps", type=int, default=None)
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--history-input",
        choices=HISTORY_INPUTS,
        default="tokens",
        help="encoder input of the random model (an artifact's model says its own): one position per sid token"
        " (TIGER) or per item",
    )
    p.add_argument("--out", default=None, help="also store the run in this JSON list (one run per device)")
    p.add_argument("--results-md", default=None, help="re-render the generative section of this results page")
    args = p.parse_args(argv)
    args.reps = args.reps or (2 if args.quick else 10)
    args.ref_reps = args.ref_reps or (1 if args.quick else 3)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = run(args)
    print(json.dumps(out))
    if args.out:
        save_run(Path(args.out), out)
    if args.results_md:
        from training.reports.generative import RESULTS_JSON, write_generative_section

        if not args.out:
            raise SystemExit("--results-md needs --out (the section is rendered from the JSON files)")
        write_generative_section(RESULTS_JSON, Path(args.out), Path(args.results_md))
    if not args.json:
        print(f"batched {out['batched_per_s']}/s vs generate {out['reference_per_s']}/s: {out['speedup']}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
