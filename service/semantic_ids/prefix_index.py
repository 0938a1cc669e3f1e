"""Valid-prefix tables of a semantic-ID catalog, as torch tensors on one device.

The catalog's sids (``[N, depth]``) form a trie. Level ``l`` nodes are the distinct
prefixes of length ``l + 1``, numbered in lexicographic order, so the children of a
node are a contiguous run of the next level's nodes (CSR ``child_ptr``) and the items
under a node are a contiguous run of the sorted items (``item_start``/``item_end``).

Children of a beam's current node, as a row over the next level's codes, come from:
- level 0 (root) and level 1: dense tables ``[K0]`` and ``[P0, K1]`` of child node ids
  (``-1`` = no such child), one gather per step;
- deeper levels: the CSR arrays: each parent's child run (at most ``max_degree``)
  scattered into a ``[rows, K]`` row of node ids.

Per-request filters are item masks ``[B, N]``; :meth:`PrefixIndex.allowed_counts`
turns one into allowed-item counts per node and level (``[B, P_l]``) with one cumsum,
and the beam search treats a child with count 0 as absent. That is the per-request
restricted index without building a trie per request. A per-request item prior (log-probabilities
``[B, N]``) becomes the log of its mass under each node the same way
(:meth:`PrefixIndex.prefix_log_mass`), which prior-guided decoding adds level by level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from service.core.sid import SidLayout

DENSE_LEVELS = 2  # levels whose child tables are dense (root row and level-1 parents)


@dataclass
class LevelTables:
    token: Tensor  # [P_l] long: code of each node at its level
    item_start: Tensor  # [P_l] long: first sorted item under the node
    item_end: Tensor  # [P_l] long: one past the last sorted item under the node
    child_ptr: Tensor | None  # [P_l + 1] long into level l+1 nodes (None at the last level)
    max_degree: int  # most children of one node (0 at the last level)


class PrefixIndex:
    def __init__(self, sids: npt.ArrayLike, layout: SidLayout, device: torch.device | str = "cpu") -> None:
        s = np.asarray(sids, dtype=np.int64)
        if s.ndim != 2 or s.shape[1] != layout.depth:
            raise ValueError(f"sids must be [N, {layout.depth}], got {s.shape}")
        if len(s) == 0:
            raise ValueError("cannot index an empty catalog")
        self.layout = layout
        self.device = torch.device(device)
        self.n_items = len(s)
        order = np.lexsort(s.T[::-1])  # sorted item position -> item row
        ss = s[order]  # [N, depth] lexicographically sorted
        if (np.diff(ss, axis=0) == 0).all(axis=1).any():
            raise ValueError("semantic IDs are not unique")
        self.sorted_items = torch.as_tensor(order, device=self.device)  # [N]
        depth = layout.depth
        levels: list[LevelTables] = []
        node_of_item: list[np.ndarray] = []  # per level: [N] node id of each sorted item
        for lv in range(depth):
            new = np.ones(len(ss), dtype=bool)
            new[1:] = (ss[1:, : lv + 1] != ss[:-1, : lv + 1]).any(axis=1)
            starts = np.flatnonzero(new)  # [P_l]
            ends = np.r_[starts[1:], len(ss)]
            node_of_item.append(np.cumsum(new) - 1)
            levels.append(
                LevelTables(
                    token=torch.as_tensor(ss[starts, lv], device=self.device),
                    item_start=torch.as_tensor(starts, device=self.device),
                    item_end=torch.as_tensor(ends, device=self.device),
                    child_ptr=None,
                    max_degree=0,
                )
            )
        for lv in range(depth - 1):
            # parent (level lv) of every level lv+1 node, then CSR pointers by counting.
            child_starts = levels[lv + 1].item_start.cpu().numpy()
            parent = node_of_item[lv][child_starts]  # [P_{l+1}], non-decreasing
            counts = np.bincount(parent, minlength=len(levels[lv].token))
            ptr = np.r_[0, np.cumsum(counts)]
            levels[lv].child_ptr = torch.as_tensor(ptr, device=self.device)
            levels[lv].max_degree = int(counts.max())
        self.levels = levels
        # Per level: the node of each sorted item [N] (segment sums of item weights).
        self.node_of_sorted = [torch.as_tensor(n, device=self.device) for n in node_of_item]
        # Sorted leaf (last-level node) -> item row.
        self.leaf_item = self.sorted_items  # leaves are exactly the sorted items
        # Dense tables: root children [K0] and level-1 children [P0, K1] (node ids, -1 = none).
        k0 = layout.level_size(0)
        root = torch.full((k0,), -1, dtype=torch.long, device=self.device)
        root[levels[0].token] = torch.arange(len(levels[0].token), device=self.device)
        self.root_children = root  # [K0]
        self.dense_children: Tensor | None = None
        if depth > 1:
            k1 = layout.level_size(1)
            table = torch.full((len(levels[0].token), k1), -1, dtype=torch.long, device=self.device)
            ptr0 = levels[0].child_ptr
            assert ptr0 is not None
            parents = torch.repeat_interleave(
                torch.arange(len(levels[0].token), device=self.device), ptr0[1:] - ptr0[:-1]
            )  # [P_1]
            table[parents, levels[1].token] = torch.arange(len(levels[1].token), device=self.device)
            self.dense_children = table  # [P0, K1]

    @property
    def depth(self) -> int:
        return self.layout.depth

    def n_nodes(self, level: int) -> int:
        return int(self.levels[level].token.shape[0])

    def children(self, level: int, parents: Tensor) -> Tensor:
        """Child node ids of ``parents`` (level ``level - 1`` node ids, ``-1`` = dead beam) over the
        codes of ``level``. parents [R] -> [R, K_level] long, ``-1`` where no child has that code."""
        k = self.layout.level_size(level)
        r = parents.shape[0]
        alive = parents >= 0  # [R]
        p = parents.clamp_min(0)
        if level == 0:
            out = self.root_children[None, :].expand(r, k)  # [R, K0]
        elif level < DENSE_LEVELS:
            assert self.dense_children is not None
            out = self.dense_children[p]  # [R, K1]
        else:
            lt = self.levels[level - 1]
            assert lt.child_ptr is not None
            start = lt.child_ptr[p]  # [R]
            count = lt.child_ptr[p + 1] - start  # [R]
            offs = torch.arange(lt.max_degree, device=self.device)  # [M]
            valid = (offs[None, :] < count[:, None]) & alive[:, None]  # [R, M]
            child = torch.where(valid, start[:, None] + offs[None, :], 0)  # [R, M]
            codes = torch.where(valid, self.levels[level].token[child], k)  # [R, M]; k = spill column
            out = torch.full((r, k + 1), -1, dtype=torch.long, device=self.device)
            out.scatter_(1, codes, torch.where(valid, child, -1))
            out = out[:, :k]  # [R, K]
        return torch.where(alive[:, None], out, -1)

    def allowed_counts(self, allowed: Tensor) -> list[Tensor]:
        """Item mask [B, N] (row order of the table) -> per level allowed items under each node [B, P_l]."""
        if allowed.ndim != 2 or allowed.shape[1] != self.n_items:
            raise ValueError(f"allowed mask must be [B, {self.n_items}], got {tuple(allowed.shape)}")
        a = allowed.to(self.device)[:, self.sorted_items].to(torch.int32)  # [B, N] sorted order
        csum = torch.nn.functional.pad(a.cumsum(1), (1, 0))  # [B, N + 1]
        return [csum[:, lt.item_end] - csum[:, lt.item_start] for lt in self.levels]  # [B, P_l] each

    def prefix_log_mass(self, log_prior: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Item log-weights [B, N] (row order of the table; ``-inf`` = no weight) -> (log of each
        request's total weight [B], per level the log of the weight under each node [B, P_l]).

        Sums run in float64 over ``exp(log_prior - row max)`` (segment sums per level, so a small
        weight never vanishes in a large running sum); the logs are cast to float32."""
        if log_prior.ndim != 2 or log_prior.shape[1] != self.n_items:
            raise ValueError(f"log prior must be [B, {self.n_items}], got {tuple(log_prior.shape)}")
        lp = log_prior.to(self.device, torch.float64)[:, self.sorted_items]  # [B, N] sorted order
        top = lp.max(dim=1, keepdim=True).values  # [B, 1]
        top = torch.where(torch.isfinite(top), top, 0.0)
        w = torch.exp(lp - top)  # [B, N] in [0, 1]
        total = (torch.log(w.sum(1)) + top[:, 0]).float()  # [B]
        levels = []
        for lv, nodes in enumerate(self.node_of_sorted):
            mass = torch.zeros((w.shape[0], self.n_nodes(lv)), dtype=w.dtype, device=self.device)
            mass.index_add_(1, nodes, w)  # [B, P_l]
            levels.append((torch.log(mass) + top).float())
        return total, levels
