"""Training examples and batches of the generative recommender.

Every position of every leave-one-out training sequence is an example (history = the items before
it, last ``max_items``; target = the item), teacher-forced on the target's sid tokens. Batches group
similar history lengths; a model trained next to the item -> next item prior gets a per-batch logit
bias (:class:`PriorBias`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from service.core.transitions import TransitionPrior
from service.semantic_ids.decoder import history_tokens
from service.semantic_ids.prefix_index import PrefixIndex
from training.config import GenRecConfig
from training.models.genrec import GenRecBatch


def training_examples(
    train: Sequence[Sequence[int]], max_items: int
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """(history, target, sequence) for every position >= 1 of every training sequence;
    ``sequence`` is the example's row in ``train`` (its user)."""
    hist: list[np.ndarray] = []
    targets: list[int] = []
    seqs: list[int] = []
    for u, s in enumerate(train):
        arr = np.asarray(s, dtype=np.int64)
        for i in range(1, len(arr)):
            hist.append(arr[max(0, i - max_items) : i])
            targets.append(int(arr[i]))
            seqs.append(u)
    if not hist:
        raise ValueError("no training sequence has 2 or more items")
    return hist, np.asarray(targets, dtype=np.int64), np.asarray(seqs, dtype=np.int64)


LENGTH_BUCKET = 32  # batches per length-sorted window (GenRecBatches.epoch)


class PriorBias:
    """Training-time logit bias of a model trained next to the item -> next item prior
    (``GenRecConfig.prior_train_weight``): for each example and sid level, ``weight`` x the log prior
    mass under each valid child of the target's prefix, ``-inf`` on every other token. The
    prior conditions on the example's last history item with the example's own transition left
    out of the counts (:meth:`TransitionPrior.log_prob`), so the model is not trained against
    counts that already hold its answer."""

    def __init__(self, prior: TransitionPrior, index: PrefixIndex, vocab_size: int, weight: float) -> None:
        if prior.n_items != index.n_items:
            raise ValueError(f"prior over {prior.n_items} items for a catalog of {index.n_items}")
        if not (math.isfinite(weight) and weight > 0):
            raise ValueError(f"prior bias weight must be > 0, got {weight}")
        self.prior, self.index, self.vocab_size, self.weight = prior, index, vocab_size, weight
        position = torch.empty_like(index.sorted_items)  # item row -> position in sorted order
        position[index.sorted_items] = torch.arange(index.n_items, device=index.device)
        self.node_of_item = [nodes[position] for nodes in index.node_of_sorted]  # per level [N]

    def __call__(self, last: np.ndarray, targets: np.ndarray) -> torch.Tensor:
        """last [B] (history's newest item), targets [B] -> bias [B, depth, V] float32."""
        layout = self.index.layout
        lp = torch.from_numpy(self.prior.log_prob(last, leave_out=targets))  # [B, N]
        _, mass = self.index.prefix_log_mass(lp)  # per level [B, P_l]
        t = torch.as_tensor(targets, device=self.index.device)
        bias = torch.full((len(targets), layout.depth, self.vocab_size), float("-inf"), device=self.index.device)
        for level in range(layout.depth):
            parents = torch.zeros_like(t) if level == 0 else self.node_of_item[level - 1][t]  # [B]
            child = self.index.children(level, parents)  # [B, K]
            m = mass[level].gather(1, child.clamp_min(0))  # [B, K]
            off, k = layout.level_offset(level), layout.level_size(level)
            bias[:, level, off : off + k] = torch.where(child >= 0, self.weight * m, float("-inf"))
        return bias


class GenRecBatches:
    """Training batches. ``user_tokens`` [len(train)] + ``no_user``: each training sequence's user
    token and the anonymous one, for a model with user tokens (a ``cfg.user_dropout`` share of
    examples, drawn per epoch, gets ``no_user``). ``history_table``: the items' encoder rows when
    they differ from their sid tokens (item-ID column, :func:`with_item_ids`; a ``cfg.item_dropout``
    share of history positions gets no ID). ``prior_bias``: each batch's logit bias for a model
    trained next to the prior."""

    def __init__(
        self,
        item_tokens: np.ndarray,
        train: Sequence[Sequence[int]],
        cfg: GenRecConfig,
        device: torch.device,
        user_tokens: np.ndarray | None = None,
        no_user: int = 0,
        history_table: np.ndarray | None = None,
        prior_bias: PriorBias | None = None,
    ) -> None:
        self.item_tokens = item_tokens  # [N, depth]: the targets' tokens
        self.history_table = item_tokens if history_table is None else history_table  # [N, depth (+ 1)]
        self.id_column = history_table is not None
        self.hist, self.targets, self.seqs = training_examples(train, cfg.max_items)
        if user_tokens is not None and len(user_tokens) != len(train):
            raise ValueError(f"{len(user_tokens)} user tokens for {len(train)} training sequences")
        self.user_tokens = user_tokens
        self.no_user = no_user
        self.lengths = np.array([len(h) for h in self.hist])
        self.cfg = cfg
        self.device = device
        self.bucket = LENGTH_BUCKET
        self.prior_bias = prior_bias

    def __len__(self) -> int:
        return math.ceil(len(self.targets) / self.cfg.batch_size)

    def epoch(self, epoch: int) -> Iterator[GenRecBatch]:
        """Shuffled batches of similar history lengths (sorted inside windows of ``bucket``
        batches, then the batches shuffled): padding to the longest history in a random
        batch would multiply the encoder's work several times on short-history data."""
        rng = np.random.default_rng((self.cfg.seed, epoch))
        order = rng.permutation(len(self.targets))
        bs = self.cfg.batch_size
        window = bs * self.bucket
        chunks: list[np.ndarray] = []
        for start in range(0, len(order), window):
            part = order[start : start + window]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            chunks += [part[i : i + bs] for i in range(0, len(part), bs)]
        users: np.ndarray | None = None
        if self.user_tokens is not None:  # per example: its user's token, or no-user (dropout)
            users = self.user_tokens[self.seqs]
            users = np.where(rng.random(len(users)) < self.cfg.user_dropout, self.no_user, users)
        for j in rng.permutation(len(chunks)):
            idx = chunks[j]
            ids, mask = history_tokens(
                self.history_table,
                [self.hist[i] for i in idx],
                self.cfg.max_items,
                per_item=self.cfg.history_input == "items",
                users=None if users is None else users[idx],
            )
            if self.id_column and self.cfg.item_dropout > 0:  # some positions lose their ID, as new items have none
                ids[..., -1] = np.where(rng.random(ids.shape[:2]) < self.cfg.item_dropout, 0, ids[..., -1])
            labels = self.item_tokens[self.targets[idx]]  # [B, depth]
            bias = None
            if self.prior_bias is not None:
                bias = self.prior_bias(np.array([self.hist[i][-1] for i in idx]), self.targets[idx]).to(self.device)
            yield GenRecBatch(
                torch.from_numpy(ids).to(self.device),
                torch.from_numpy(mask).long().to(self.device),
                torch.from_numpy(labels).to(self.device),
                bias,
            )
