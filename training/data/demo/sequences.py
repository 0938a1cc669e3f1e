"""Demo purchase sequences: what a user buys next, and when.

Popularity skew (Zipf inside each product type), category affinity, brand loyalty (which
grows with purchases), tier preference and complementary follow-ups along a directed graph
of product types, often from the same brand, plus noise. Follow-ups come hours to days
later, other purchases weeks later; timestamps strictly increase.
"""

from __future__ import annotations

import math
from itertools import accumulate

from training.config import DemoConfig
from training.data.demo.catalog import CATALOG
from training.data.demo.items import Item
from training.data.demo.stream import Stream
from training.data.demo.users import User

# Next step of a sequence after a purchase (cumulative thresholds): complement of the
# product type just bought, one of the user's favourite types, a type from a department
# the profile favours, or a random item (noise).
P_COMPLEMENT, P_FAVOURITE, P_PROFILE = 0.50, 0.80, 0.93
P_SAME_BRAND = 0.5  # a complement comes from the brand just bought when that brand makes one
BRAND_BOOST, TIER_BOOST = 4.0, 2.5  # item weight multipliers for favourite brands / the preferred tier
P_ADOPT_BRAND = 0.3  # a purchase makes its brand a favourite with this probability
ZIPF_EXPONENT = 1.0
START_TS = 1_672_531_200  # 2023-01-01 UTC


class Shop:
    """Precomputed lookup tables for fast sampling of purchases."""

    def __init__(self, items: list[Item], rs: Stream) -> None:
        self.items = items
        self.leaf_items: dict[str, list[int]] = {}
        for it in items:
            self.leaf_items.setdefault(it.leaf, []).append(it.index)
        self.leaf_dept = {leaf: d for d, types in CATALOG.items() for leaf in types}
        # Zipf popularity inside each product type, over a random order of its items.
        self.popularity = [0.0] * len(items)
        # New arrivals keep popularity 0: zero-width intervals are never drawn.
        for ids in self.leaf_items.values():
            on_sale = [i for i in ids if not items[i].new_arrival]
            order = sorted(range(len(on_sale)), key=lambda _j: rs.random())
            for rank, j in enumerate(order, start=1):
                self.popularity[on_sale[j]] = 1.0 / rank**ZIPF_EXPONENT
        self.leaf_cum = {
            leaf: list(accumulate(self.popularity[i] for i in ids)) for leaf, ids in self.leaf_items.items()
        }
        self.leaf_brand_items: dict[tuple[str, int], list[int]] = {}
        for it in items:
            if not it.new_arrival:
                self.leaf_brand_items.setdefault((it.leaf, it.brand), []).append(it.index)
        self.leaf_brand_cum = {
            k: list(accumulate(self.popularity[i] for i in ids)) for k, ids in self.leaf_brand_items.items()
        }
        self.complements = {
            leaf: [c for c in CATALOG[self.leaf_dept[leaf]][leaf].complements if c in self.leaf_items]
            for leaf in self.leaf_items
        }
        # The first complement is the likeliest follow-up: weights 1, 1/2, 1/3.
        self.complement_cum = {
            leaf: list(accumulate(1.0 / (j + 1) for j in range(len(c)))) for leaf, c in self.complements.items()
        }
        self.leaves_of = {d: [x for x in types if x in self.leaf_items] for d, types in CATALOG.items()}
        self.global_cum = list(accumulate(self.popularity))

    def pick_in_leaf(self, leaf: str, user: User, used: set[int], rs: Stream) -> int | None:
        """An unused item of ``leaf``: popularity x brand loyalty x tier preference (rejection sampling)."""
        ids, cum = self.leaf_items[leaf], self.leaf_cum[leaf]
        w_max = (BRAND_BOOST if self.leaf_dept[leaf] in user.brand_depts else 1.0) * TIER_BOOST  # tight bound
        for _ in range(40):
            i = ids[rs.weighted(cum)]
            it = self.items[i]
            w = (BRAND_BOOST if it.brand in user.fav_brands else 1.0) * (TIER_BOOST if it.tier == user.tier else 1.0)
            if i not in used and rs.random() * w_max < w:
                return i
        free = [i for i in ids if i not in used and not self.items[i].new_arrival]
        return rs.choice(free) if free else None

    def pick_same_brand(self, leaf: str, brand: int, used: set[int], rs: Stream) -> int | None:
        key = (leaf, brand)
        if key not in self.leaf_brand_items:
            return None
        ids, cum = self.leaf_brand_items[key], self.leaf_brand_cum[key]
        for _ in range(8):
            i = ids[rs.weighted(cum)]
            if i not in used:
                return i
        return None

    def pick_any(self, used: set[int], rs: Stream) -> int:
        for _ in range(20):
            i = rs.weighted(self.global_cum)
            if i not in used:
                return i
        free = [i for i in range(len(self.items)) if i not in used and not self.items[i].new_arrival]
        return rs.choice(free) if free else rs.weighted(self.global_cum)  # tiny catalog: repeat a purchase


def make_sequence(user: User, shop: Shop, cfg: DemoConfig, rs: Stream, depts: list[str]) -> tuple[list[int], list[int]]:
    """One user's purchases: item indices and their strictly increasing timestamps."""
    # Length: min_len plus a geometric tail (mean ~6), capped at max_len and the catalog size.
    extra = int(math.log(1.0 - rs.random()) / math.log(0.85))
    length = min(cfg.min_len + extra, cfg.max_len, len(shop.items))
    seq: list[int] = []
    stamps: list[int] = []
    used: set[int] = set()
    ts = START_TS + rs.below(300 * 86_400)
    leaf = rs.choice(user.fav_leaves)
    prev_brand: int | None = None  # set when the step is a complement that may stay with the brand
    while len(seq) < length:
        pick: int | None = None
        if prev_brand is not None and rs.random() < P_SAME_BRAND:
            pick = shop.pick_same_brand(leaf, prev_brand, used, rs)
        if pick is None:
            pick = shop.pick_in_leaf(leaf, user, used, rs)
        if pick is None:  # product type sold out for this user
            pick = shop.pick_any(used, rs)
        item = shop.items[pick]
        seq.append(pick)
        stamps.append(ts)
        used.add(pick)
        if rs.random() < P_ADOPT_BRAND:
            user.fav_brands.add(item.brand)  # loyalty grows with purchases
            user.brand_depts.add(item.dept)
        # Choose what comes next and when.
        r = rs.random()
        complements = shop.complements[item.leaf]
        prev_brand = None
        if r < P_COMPLEMENT and complements:
            leaf = complements[rs.weighted(shop.complement_cum[item.leaf])]
            prev_brand = item.brand
            ts += rs.between(3_600, 3 * 86_400)  # follow-ups come soon
        else:
            if r < P_FAVOURITE:
                leaf = rs.choice(user.fav_leaves)
            elif r < P_PROFILE:
                dept = depts[rs.weighted(user.dept_cum)]
                leaf = rs.choice(shop.leaves_of[dept] or user.fav_leaves)
            else:
                leaf = shop.items[shop.pick_any(used, rs)].leaf  # noise: a popular type anywhere
            ts += rs.between(2 * 86_400, 45 * 86_400)
    return seq, stamps
