"""Demo catalog items: brands, items of every product type, and their listing text.

Every item has a brand (budget / mid-range / premium tier, brands belong to one
department), a product line named after the tier, attributes of its product type, a
price from the type's base price and the tier, a title written like a real listing,
a description of several sentences and feature bullets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from training.config import DemoConfig
from training.data.demo.catalog import (
    AUDIENCE,
    BRANDS_PER_DEPT,
    CATALOG,
    SYLLABLES,
    TIER_ADJECTIVES,
    TIER_BRAND_FAME,
    TIER_LINES,
    TIER_PRICE,
    TIER_QUALIFIER,
    TIERS,
)
from training.data.demo.stream import Stream

NEW_ARRIVAL_SHARE = 0.02  # the last items of the catalog never appear in a sequence (cold start for the text path)


@dataclass
class Item:
    """One catalog item while it is being made (its row is :func:`item_row`)."""

    index: int
    dept: str
    leaf: str
    brand: int  # index into the brand table
    tier: int
    line: str
    attrs: dict[str, str]
    pack: int = 1
    price: float = 0.0
    new_arrival: bool = False  # listed after the purchase logs end: in the catalog, in no sequence


@dataclass
class Brand:
    """A brand of one department and price tier."""

    name: str
    dept: str
    tier: int
    price_factor: float


def _a(word: str) -> str:
    """Indefinite article for ``word`` (good enough for the demo vocabulary)."""
    return "an" if word[:1].lower() in "aeiou8" else "a"


def _a_noun(noun: str) -> str:
    """'a tent', 'an ...', but plural product types ('coffee beans') take none."""
    return noun if noun.endswith("s") else f"{_a(noun)} {noun}"


UNITS = frozenset({"ml", "mm", "g", "kg", "qt", "lb", "inch", "m"})


def _title_case(text: str) -> str:
    """'tea tree' -> 'Tea Tree'; units and codes keep their case ('35 mm', 'APS-C')."""
    return " ".join(w if w in UNITS else w[:1].upper() + w[1:] for w in text.split())


def make_brands(rs: Stream) -> list[Brand]:
    """BRANDS_PER_DEPT distinct made-up names per department, tiers cycling budget, mid-range, premium."""
    names: set[str] = set()
    out: list[Brand] = []
    for dept in CATALOG:
        j = 0
        while j < BRANDS_PER_DEPT:
            name = "".join(rs.choice(SYLLABLES) for _ in range(rs.between(2, 3))).capitalize()
            if name in names or len(name) < 5:
                continue
            names.add(name)
            out.append(Brand(name, dept, j % 3, 0.9 + 0.2 * rs.random()))
            j += 1
    return out


def _title(it: Item, brands: list[Brand]) -> str:
    values = list(it.attrs.values())
    head = f"{brands[it.brand].name} {it.line} {_title_case(values[0])} {_title_case(it.leaf)}"
    tail = values[1:] + ([f"pack of {it.pack}"] if it.pack > 1 else [])
    return head + (", " + ", ".join(tail) if tail else "")


def make_catalog(cfg: DemoConfig, rs: Stream, brands: list[Brand]) -> list[Item]:
    """Items spread round-robin over product types first (every type gets one), then at random."""
    leaves = [(d, leaf) for d, types in CATALOG.items() for leaf in types]
    dept_brands = {d: [b for b, br in enumerate(brands) if br.dept == d] for d in CATALOG}
    items: list[Item] = []
    titles: set[str] = set()
    n_new = int(NEW_ARRIVAL_SHARE * cfg.n_items)
    for idx in range(cfg.n_items):
        dept, leaf = leaves[idx] if idx < len(leaves) else rs.choice(leaves)
        spec = CATALOG[dept][leaf]
        for _attempt in range(12):
            b = rs.choice(dept_brands[dept])
            tier = brands[b].tier
            attrs = {name: rs.choice(values) for name, values in spec.attributes}
            it = Item(idx, dept, leaf, b, tier, rs.choice(TIER_LINES[tier]), attrs)
            if _title(it, brands) not in titles:
                break
        while _title(it, brands) in titles:  # every combination taken: sell it as a multipack
            it.pack += 1
        titles.add(_title(it, brands))
        raw = spec.base_price * TIER_PRICE[tier] * brands[b].price_factor * (0.85 + 0.35 * rs.random())
        raw *= it.pack * 0.9 if it.pack > 1 else 1.0
        it.price = max(round(round(raw) - 0.01, 2), 0.99)
        it.new_arrival = idx >= max(cfg.n_items - n_new, len(leaves))
        items.append(it)
    return items


def _description(it: Item, brands: list[Brand], rs: Stream, complements: list[str]) -> str:
    spec = CATALOG[it.dept][it.leaf]
    brand = brands[it.brand].name
    adj = rs.choice(TIER_ADJECTIVES[it.tier])
    attr_text = ", ".join(f"{k} {v}" for k, v in it.attrs.items())
    opening = rs.choice(
        [
            f"The {brand} {it.line} {it.leaf} is made to {spec.use}.",
            f"{_a(adj).capitalize()} {adj} {it.leaf} from {brand}, made to {spec.use}.",
            f"Made to {spec.use}, this {brand} {it.leaf} belongs to our {spec.subcategory.lower()} range.",
        ]
    )
    sentences = [
        opening,
        f"Key specs of this {TIERS[it.tier]} {it.leaf}: {attr_text}.",
        f"Ideal for {AUDIENCE[spec.subcategory]} {TIER_QUALIFIER[it.tier]}.",
    ]
    if complements:
        sentences.append(f"Pairs well with {' or '.join(_a_noun(c) for c in complements[:2])}.")
    sentences.append(f"{brand} is known for {rs.choice(TIER_BRAND_FAME[it.tier])}.")
    return " ".join(sentences)


def _features(it: Item, brands: list[Brand], complements: list[str]) -> list[str]:
    feats = [f"{k[:1].upper() + k[1:]}: {v}" for k, v in it.attrs.items()]
    feats.append(f"{TIERS[it.tier].capitalize()} {it.leaf} by {brands[it.brand].name}")
    if it.pack > 1:
        feats.append(f"Pack of {it.pack}")
    if complements:
        feats.append(f"Goes with: {', '.join(complements)}")
    return feats


def item_row(it: Item, brands: list[Brand], rs: Stream, complements: list[str]) -> dict[str, Any]:
    """The ``items.jsonl`` row of ``it`` (draws its description from ``rs``)."""
    spec = CATALOG[it.dept][it.leaf]
    return {
        "item_id": f"D{it.index:06d}",
        "title": _title(it, brands),
        "description": _description(it, brands, rs, complements),
        "features": _features(it, brands, complements),
        "brand": brands[it.brand].name,
        "categories": [it.dept, spec.subcategory, _title_case(it.leaf)],
        "price": it.price,
        "attributes": dict(it.attrs),
    }
