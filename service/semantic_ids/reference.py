"""Plain reference for :func:`service.semantic_ids.beam.beam_search`: a dict trie walked
one request and one beam at a time in Python. Slow on purpose: it states what the
batched search must return (property tests in tests/unit/service/semantic_ids/).

Same arithmetic as the batched search: log-softmax over the full vocabulary of the
model's float32 logits, float32 running sums, children limited to prefixes with at
least one allowed item, and with a prior the same per-level term: ``prior_weight`` x (log mass
of the child - log mass of the node), masses summed in float64 and their logs cast to float32.
With ``renormalize`` each beam's per-child terms go through a float32 ``torch.logsumexp`` over
its valid children, as the batched search's log-softmax over them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch

from service.core.sid import SidLayout
from service.semantic_ids.beam import StepFn


@dataclass
class TrieNode:
    children: dict[int, TrieNode] = field(default_factory=dict)
    item: int = -1  # item row at a leaf
    mass: float = 0.0  # prior weight of the items under the node (relative to the request's largest)


def build_trie(
    sids: npt.ArrayLike, allowed: Sequence[bool] | None = None, weights: Sequence[float] | None = None
) -> TrieNode:
    """Trie of the sids [N, depth] (only rows with ``allowed[row]`` when given); ``weights``:
    per-item prior weights summed into every node on the item's path."""
    root = TrieNode()
    for row, sid in enumerate(np.asarray(sids, dtype=np.int64).tolist()):
        if allowed is not None and not allowed[row]:
            continue
        w = 0.0 if weights is None else float(weights[row])
        node = root
        node.mass += w
        for code in sid:
            node = node.children.setdefault(code, TrieNode())
            node.mass += w
        node.item = row
    return root


def _log_mass(node: TrieNode, shift: float) -> np.float32:
    return np.float32(np.log(node.mass) + shift) if node.mass > 0 else np.float32(-np.inf)


def reference_beam_search(
    step: StepFn,
    sids: npt.ArrayLike,
    layout: SidLayout,
    batch_size: int,
    beam: int,
    k: int,
    allowed: npt.ArrayLike | None = None,
    log_prior: npt.ArrayLike | None = None,
    prior_weight: float = 1.0,
    renormalize: bool = False,
) -> tuple[list[list[int]], list[list[float]]]:
    """Per request: (item rows, scores) of the top ``k`` decoded items, best first."""
    mask = None if allowed is None else np.asarray(allowed, dtype=bool)
    lp = None if log_prior is None or prior_weight <= 0 else np.asarray(log_prior, dtype=np.float64)
    shared = build_trie(sids) if mask is None and lp is None else None
    all_items: list[list[int]] = []
    all_scores: list[list[float]] = []
    for b in range(batch_size):
        shift = 0.0
        weights = None
        if lp is not None:  # the request's prior weights, relative to its largest
            top = float(lp[b].max())
            shift = top if np.isfinite(top) else 0.0
            weights = np.exp(lp[b] - shift).tolist()
        trie = shared
        if trie is None:
            trie = build_trie(sids, mask[b].tolist() if mask is not None else None, weights)
        beams: list[tuple[np.float32, list[int], TrieNode]] = [(np.float32(0.0), [], trie)]
        for level in range(layout.depth):
            off = layout.level_offset(level)
            cands: list[tuple[np.float32, list[int], TrieNode]] = []
            for score, tokens, node in beams:
                prefix = torch.tensor(tokens, dtype=torch.long).view(1, 1, len(tokens))
                logits = step_for_request(step, prefix, b, batch_size)  # [V]
                logp = torch.log_softmax(logits.float(), dim=-1).numpy()
                if renormalize:
                    terms: list[tuple[np.float32, int, TrieNode]] = []
                    for code, child in node.children.items():
                        term = np.float32(logp[off + code])
                        if lp is not None:
                            child_mass = _log_mass(child, shift)
                            if not np.isfinite(child_mass):
                                continue
                            gain = np.float32(child_mass - _log_mass(node, shift))
                            term = np.float32(term + np.float32(prior_weight) * gain)
                        terms.append((term, code, child))
                    if not terms:
                        continue
                    lse = np.float32(torch.logsumexp(torch.tensor([t for t, _, _ in terms]), dim=0).item())
                    for term, code, child in terms:
                        cands.append((np.float32(score + np.float32(term - lse)), [*tokens, off + code], child))
                    continue
                for code, child in node.children.items():
                    cand = np.float32(score + logp[off + code])
                    if lp is not None:
                        parent = _log_mass(node, shift)  # the trie holds the allowed items only
                        child_mass = _log_mass(child, shift)
                        if not np.isfinite(child_mass):
                            continue
                        cand = np.float32(cand + np.float32(prior_weight) * np.float32(child_mass - parent))
                    cands.append((cand, [*tokens, off + code], child))
            cands.sort(key=lambda c: -float(c[0]))
            beams = cands[:beam]
        all_items.append([node.item for _, _, node in beams[:k]])
        all_scores.append([float(s) for s, _, _ in beams[:k]])
    return all_items, all_scores


def step_for_request(step: StepFn, prefix: torch.Tensor, request: int, batch_size: int) -> torch.Tensor:
    """Logits [V] of one request's one beam: the step function sees a batch where only row
    ``request`` matters (steps depend on the request through their batch row)."""
    full = prefix.expand(batch_size, 1, prefix.shape[2])  # [B, 1, t]
    return step(full)[request, 0]  # [V]
