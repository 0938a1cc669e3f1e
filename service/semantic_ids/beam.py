"""Batched constrained beam search over semantic IDs (torch, any device).

One decoding step for all requests and beams at once: the model gives logits
``[B, W, V]`` for every beam's prefix, ``log_softmax`` over the whole vocabulary
turns them into log-probabilities (as Hugging Face ``generate`` does before its
logits processors), the prefix index gives each beam's valid children ``[B, W, K]``
(dense gathers for the first two levels, CSR for deeper ones), invalid codes get
``-inf``, and one ``topk`` over ``[B, W * K]`` picks the next beams. There is no
Python loop over beams and no per-token callback: the Python loop runs over the
``depth`` (4) levels only.

A beam's score is the sum of its tokens' log-probabilities. Beams that run out of
valid continuations (fewer valid prefixes than the beam width) carry ``-inf`` and
are dropped from the result. With an item filter, a child is valid only if some
allowed item lies under it, so every returned item is allowed, and with ``beam >= k``
the search returns ``min(k, allowed items)`` items (the live-beam count never drops
below ``min(beam, valid prefixes)`` at any level).

Prior-guided decoding (``log_prior`` [B, N], e.g. the item -> next item prior of
``service.core.transitions``): with ``M(node)`` the prior mass of the items under a node,
a child ``c`` of node ``p`` gets ``prior_weight * (log M(c) - log M(p))`` added to its
step score. The sum over the levels telescopes to ``prior_weight * log p_prior(item)``,
so a decoded item's score is ``log p_model(sid) + prior_weight * log p_prior(item)`` (the
product of the two experts, prior normalised over the allowed items), and the prior steers
the beam at every level instead of re-ranking a finished beam. A prefix whose prior mass
is zero (every item under it at ``-inf``) is pruned like a filtered one.

``renormalize``: each step's term (model log-probability, plus the prior term when given) is
renormalised over the beam's valid children (a log-softmax over them), so a decoded item's
score is the log-probability of a distribution over the allowed items that factorises level
by level: ``q(code | prefix) ∝ p_model(code | prefix) * M(child) ** prior_weight``; without a
prior it is the model's softmax restricted to valid codes. With constant model logits each level
follows the prior's mass alone (the "prior in the beam" figure of bench-genrec).

``reference.py`` holds the plain trie walk this must agree with (property tests).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from service.semantic_ids.prefix_index import PrefixIndex

# prefix tokens [B, W, t] (t = tokens decoded so far, 0 at the first step) -> logits [B, W, V].
# A step may also have ``reorder(src [B, W'])``: called after each selection (new beam j
# extends old beam src[:, j]) so it can gather per-beam caches instead of recomputing.
StepFn = Callable[[Tensor], Tensor]


class BeamResult(NamedTuple):
    items: Tensor  # [B, k] long item rows (-1 = no item: fewer valid items than k)
    scores: Tensor  # [B, k] float sum of log-probs (-inf where items is -1)
    tokens: Tensor  # [B, k, depth] long token ids of the decoded sids

    def to_cpu(self) -> BeamResult:
        return BeamResult(self.items.cpu(), self.scores.cpu(), self.tokens.cpu())


class _Prior(NamedTuple):
    """The item prior summed under every prefix: log total [B], per level log mass under each node [B, P_l]."""

    total: Tensor
    mass: list[Tensor]
    weight: float


def _check_args(
    batch_size: int, beam: int, k: int, allowed: Tensor | None, log_prior: Tensor | None, prior_weight: float
) -> None:
    if not 1 <= k <= beam:
        raise ValueError(f"need 1 <= k <= beam, got k={k}, beam={beam}")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if allowed is not None and allowed.shape[0] != batch_size:
        raise ValueError(f"allowed mask has {allowed.shape[0]} rows for a batch of {batch_size}")
    if log_prior is not None and log_prior.shape[0] != batch_size:
        raise ValueError(f"log prior has {log_prior.shape[0]} rows for a batch of {batch_size}")
    if not math.isfinite(prior_weight) or prior_weight < 0:
        raise ValueError(f"prior_weight must be a finite number >= 0, got {prior_weight}")


def _prior(index: PrefixIndex, allowed: Tensor | None, log_prior: Tensor | None, prior_weight: float) -> _Prior | None:
    """The prior's mass under every prefix (normalised over each request's allowed items); None: no prior."""
    if log_prior is None or prior_weight <= 0:
        return None
    if allowed is not None:
        log_prior = log_prior.to(index.device).masked_fill(~allowed.to(index.device).bool(), float("-inf"))
    total, mass = index.prefix_log_mass(log_prior)  # [B], per level [B, P_l]
    return _Prior(total, mass, prior_weight)


def _candidates(
    level: int,
    logp: Tensor,
    scores: Tensor,
    nodes: Tensor,
    child: Tensor,
    counts: list[Tensor] | None,
    prior: _Prior | None,
    renormalize: bool,
) -> Tensor:
    """Scores of every beam's children at ``level`` [B, W, K] (``-inf`` where a child is not valid).

    logp [B, W, K]: the model's log-probabilities of the level's codes; scores [B, W]: the beams';
    nodes [B, W]: the beams' prefix nodes; child [B, W, K]: their child nodes (-1 = none)."""
    b, w, ksz = child.shape
    valid = child >= 0
    if counts is not None:
        c = counts[level].gather(1, child.clamp_min(0).view(b, -1)).view(b, w, ksz)  # [B, W, K]
        valid &= c > 0
    term = logp  # [B, W, K]
    if prior is not None:
        mc = prior.mass[level].gather(1, child.clamp_min(0).view(b, -1)).view(b, w, ksz)  # [B, W, K]
        mp = prior.total[:, None] if level == 0 else prior.mass[level - 1].gather(1, nodes.clamp_min(0))  # [B, W]
        valid &= torch.isfinite(mc)
        gain = prior.weight * (mc - mp[:, :, None])  # [B, W, K]
        term = logp + gain
    if renormalize:  # log-softmax of the step's term over each beam's valid children
        term = torch.where(valid, term, float("-inf"))
        lse = torch.logsumexp(term, dim=-1, keepdim=True)  # [B, W, 1]; -inf: no valid child
        cand = scores[:, :, None] + (term - torch.where(torch.isfinite(lse), lse, 0.0))
    elif prior is not None:
        cand = scores[:, :, None] + logp + gain  # [B, W, K]
    else:
        cand = scores[:, :, None] + logp  # [B, W, K]
    return torch.where(valid, cand, float("-inf"))


def _result(index: PrefixIndex, scores: Tensor, nodes: Tensor, prefix: Tensor, k: int) -> BeamResult:
    """The top ``k`` of the final beams (scores [B, W] sorted, nodes [B, W], prefix [B, W, depth]), padded with -1."""
    b, depth = scores.shape[0], index.layout.depth
    alive = torch.isfinite(scores)  # [B, W]
    items = torch.where(alive, index.leaf_item[nodes.clamp_min(0)], -1)  # [B, W]
    kk = min(k, items.shape[1])
    out_items = torch.full((b, k), -1, dtype=torch.long, device=index.device)
    out_scores = torch.full((b, k), float("-inf"), dtype=torch.float32, device=index.device)
    out_tokens = torch.zeros((b, k, depth), dtype=torch.long, device=index.device)
    out_items[:, :kk] = items[:, :kk]
    out_scores[:, :kk] = scores[:, :kk]
    out_tokens[:, :kk] = prefix[:, :kk]
    return BeamResult(out_items, out_scores, out_tokens)


@torch.no_grad()
def beam_search(
    step: StepFn,
    index: PrefixIndex,
    batch_size: int,
    beam: int,
    k: int,
    allowed: Tensor | None = None,
    log_prior: Tensor | None = None,
    prior_weight: float = 1.0,
    renormalize: bool = False,
) -> BeamResult:
    """Top-``k`` items per request by constrained beam search of width ``beam`` (``k <= beam``).

    ``allowed``: optional item mask [B, N] (rows of the sid table); disallowed items are
    never decoded (their prefixes are pruned while decoding, not filtered afterwards).
    ``log_prior``: optional item log-prior [B, N] (need not be normalised; ``-inf`` = never),
    added with ``prior_weight`` level by level (module docstring). ``renormalize``: each step's
    term is a log-softmax over the valid children (module docstring).
    """
    _check_args(batch_size, beam, k, allowed, log_prior, prior_weight)
    device = index.device
    layout = index.layout
    reorder = getattr(step, "reorder", None)  # optional: steps that cache per-beam state
    counts = index.allowed_counts(allowed) if allowed is not None else None  # per level [B, P_l]
    prior = _prior(index, allowed, log_prior, prior_weight)
    b = batch_size
    prefix = torch.zeros((b, 1, 0), dtype=torch.long, device=device)  # [B, W=1, 0]
    scores = torch.zeros((b, 1), dtype=torch.float32, device=device)  # [B, W]
    nodes = torch.zeros((b, 1), dtype=torch.long, device=device)  # [B, W] current node (root: unused)
    for level in range(layout.depth):
        w = prefix.shape[1]
        ksz = layout.level_size(level)
        off = layout.level_offset(level)
        logits = step(prefix)  # [B, W, V]
        logp = torch.log_softmax(logits.float(), dim=-1)[..., off : off + ksz]  # [B, W, K]
        parents = nodes if level > 0 else torch.zeros_like(nodes)
        parents = torch.where(torch.isfinite(scores), parents, -1)  # dead beams have no children
        child = index.children(level, parents.reshape(-1)).view(b, w, ksz)  # [B, W, K]
        cand = _candidates(level, logp, scores, nodes, child, counts, prior, renormalize).view(b, w * ksz)  # [B, W*K]
        width = min(beam, w * ksz)
        scores, flat = cand.topk(width, dim=1)  # [B, W'] sorted descending
        src = flat // ksz  # [B, W'] beam each winner extends
        code = flat % ksz  # [B, W']
        nodes = child.view(b, -1).gather(1, flat)  # [B, W']
        if reorder is not None:
            reorder(src)
        prefix = torch.cat(
            [prefix.gather(1, src[:, :, None].expand(-1, -1, prefix.shape[2])), (code + off)[:, :, None]], dim=2
        )  # [B, W', t + 1]
    return _result(index, scores, nodes, prefix, k)
