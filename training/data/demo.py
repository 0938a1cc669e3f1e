"""Seeded synthetic shop: catalog, user profiles and purchase sequences.

The demo is what ``make demo`` serves and what the tests train on, so it is
built to carry the kinds of signal real shops have, and to make each of them
visible in the item text:

- catalog: departments -> subcategories -> product types (leaf categories) ->
  items. Every item has a brand (budget / mid-range / premium tier, brands belong
  to one department), a product line named after the tier ("Basics", "Pro"),
  attributes of its product type (scent, size, material, ...), a price from the
  type's base price and the tier, a title written like a real listing
  ("Velmako Pro Argan Shampoo, 500 ml"), a description of several sentences
  (use, attributes, who it is for, what it pairs with, the brand's standing) and
  feature bullets;
- users: a profile (age, occupation, country, gender; a stated favourite
  category for some) and latent tastes drawn from it: occupation and age shift
  which departments people shop in and which price tier they prefer; each user
  has 1-3 favourite departments, 1-2 favourite product types in each and a few
  favourite brands. Gender is drawn independently and carries no signal by
  design;
- sequences: popularity skew (Zipf inside each product type), category
  affinity, brand loyalty (which grows with purchases), tier preference and
  complementary follow-ups along a directed graph of product types (shampoo ->
  conditioner, tent -> sleeping bag, camera -> memory card), often from the same
  brand, plus noise. Follow-ups come hours to days later, other purchases weeks
  later; timestamps strictly increase.

All randomness comes from one seeded stream of uniforms (``numpy`` PCG64
``random()`` in blocks) consumed by plain Python, so the output is byte-identical
for the same config and the default set (3,000 items, 6,000 users) takes well
under a second to generate.

    python -m training.data.demo --out var/demo-data [--items N] [--users N] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import accumulate
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np

from training.config import DemoConfig

logger = logging.getLogger(__name__)

T = TypeVar("T")


class LeafSpec(NamedTuple):
    """One product type (leaf category) of the demo catalog."""

    subcategory: str
    attributes: list[tuple[str, list[str]]]  # (attribute name, values); the first one goes before the type in titles
    base_price: float
    complements: list[str]  # product types bought next, most likely first
    use: str  # what it is for, as an infinitive phrase ("cleanse hair ...")


# department -> product type -> spec
CATALOG: dict[str, dict[str, LeafSpec]] = {
    "Beauty": {
        "shampoo": LeafSpec(
            "Hair Care",
            [("scent", ["argan", "coconut", "tea tree", "lavender"]), ("size", ["250 ml", "500 ml"])],
            9,
            ["conditioner", "hair mask"],
            "cleanse hair and scalp without stripping natural oils",
        ),
        "conditioner": LeafSpec(
            "Hair Care",
            [("scent", ["argan", "coconut", "tea tree", "lavender"]), ("size", ["250 ml", "500 ml"])],
            9,
            ["hair mask", "hair oil"],
            "detangle and soften hair after every wash",
        ),
        "hair mask": LeafSpec(
            "Hair Care",
            [("formula", ["argan", "keratin", "honey"]), ("size", ["200 ml", "300 ml"])],
            14,
            ["hair oil", "shampoo"],
            "repair dry, damaged hair in a weekly treatment",
        ),
        "hair oil": LeafSpec(
            "Hair Care",
            [("oil", ["argan", "jojoba", "rosemary"]), ("size", ["50 ml", "100 ml"])],
            16,
            ["shampoo"],
            "tame frizz and add shine to the ends",
        ),
        "face cleanser": LeafSpec(
            "Skin Care",
            [("skin type", ["oily skin", "dry skin", "sensitive skin"]), ("texture", ["gel", "foam", "cream"])],
            12,
            ["moisturizer", "serum"],
            "remove makeup, oil and dirt at the end of the day",
        ),
        "moisturizer": LeafSpec(
            "Skin Care",
            [("skin type", ["oily skin", "dry skin", "sensitive skin"]), ("spf", ["SPF 15", "SPF 30", "no SPF"])],
            18,
            ["serum", "sunscreen"],
            "keep skin hydrated from morning to night",
        ),
        "serum": LeafSpec(
            "Skin Care",
            [("active", ["vitamin C", "retinol", "hyaluronic acid", "niacinamide"]), ("size", ["30 ml", "50 ml"])],
            25,
            ["moisturizer", "face cleanser"],
            "target dull skin and fine lines with concentrated actives",
        ),
        "sunscreen": LeafSpec(
            "Skin Care",
            [("spf", ["SPF 30", "SPF 50"]), ("finish", ["matte", "dewy", "tinted"])],
            15,
            ["moisturizer"],
            "protect skin from UVA and UVB rays outdoors",
        ),
    },
    "Outdoors": {
        "tent": LeafSpec(
            "Camping",
            [("capacity", ["1-person", "2-person", "4-person"]), ("season", ["3-season", "4-season"])],
            140,
            ["sleeping bag", "sleeping pad", "headlamp"],
            "keep you dry and sheltered on overnight trips",
        ),
        "sleeping bag": LeafSpec(
            "Camping",
            [("fill", ["down", "synthetic"]), ("rating", ["0°C", "-5°C", "10°C"])],
            90,
            ["sleeping pad", "camp pillow"],
            "keep you warm through cold nights at camp",
        ),
        "sleeping pad": LeafSpec(
            "Camping",
            [("type", ["inflatable", "foam", "self-inflating"]), ("r-value", ["R 2", "R 4"])],
            60,
            ["camp pillow", "headlamp"],
            "insulate you from the cold ground",
        ),
        "camp pillow": LeafSpec(
            "Camping",
            [("type", ["inflatable", "compressible"]), ("color", ["grey", "blue", "orange"])],
            25,
            ["headlamp"],
            "pack small and support your neck at camp",
        ),
        "headlamp": LeafSpec(
            "Hiking",
            [("brightness", ["300 lumen", "600 lumen"]), ("power", ["rechargeable", "AAA battery"])],
            35,
            ["water filter", "trekking poles"],
            "light the trail hands-free after dark",
        ),
        "water filter": LeafSpec(
            "Hiking",
            [("type", ["squeeze", "pump", "gravity"]), ("capacity", ["1 L", "4 L"])],
            40,
            ["trekking poles", "hiking backpack"],
            "make stream and lake water safe to drink",
        ),
        "trekking poles": LeafSpec(
            "Hiking",
            [("material", ["carbon", "aluminium"]), ("lock", ["flip lock", "twist lock"])],
            70,
            ["hiking backpack"],
            "take strain off your knees on steep descents",
        ),
        "hiking backpack": LeafSpec(
            "Hiking",
            [("volume", ["30 L", "45 L", "65 L"]), ("color", ["green", "grey", "orange"])],
            120,
            ["rain jacket", "tent", "water filter"],
            "carry your gear comfortably on long hikes",
        ),
        "rain jacket": LeafSpec(
            "Clothing",
            [("fit", ["men's", "women's"]), ("color", ["navy", "red", "black"])],
            110,
            ["hiking backpack", "headlamp"],
            "keep wind and rain out on the trail",
        ),
    },
    "Kitchen": {
        "chef knife": LeafSpec(
            "Cutlery",
            [("steel", ["German steel", "Damascus steel", "Japanese steel"]), ("blade", ["8 inch", "6 inch"])],
            60,
            ["cutting board", "knife sharpener"],
            "slice, dice and chop with a sharp, balanced blade",
        ),
        "cutting board": LeafSpec(
            "Cutlery",
            [("material", ["bamboo", "walnut", "plastic"]), ("size", ["medium", "large"])],
            30,
            ["knife sharpener", "chef knife"],
            "give your knives a safe surface for daily prep",
        ),
        "knife sharpener": LeafSpec(
            "Cutlery",
            [("type", ["whetstone", "pull-through"]), ("grit", ["1000/6000 grit", "400/1000 grit"])],
            25,
            ["cutting board"],
            "restore a sharp edge to dull kitchen knives",
        ),
        "frying pan": LeafSpec(
            "Cookware",
            [("material", ["cast iron", "nonstick", "stainless steel"]), ("size", ["10 inch", "12 inch"])],
            45,
            ["spatula", "saucepan"],
            "sear, saute and fry with even heat",
        ),
        "saucepan": LeafSpec(
            "Cookware",
            [("material", ["nonstick", "stainless steel", "copper"]), ("size", ["2 qt", "3 qt"])],
            40,
            ["frying pan", "spatula"],
            "simmer sauces, soups and grains",
        ),
        "spatula": LeafSpec(
            "Cookware",
            [("material", ["silicone", "wooden", "stainless steel"]), ("color", ["black", "red", "natural"])],
            10,
            ["frying pan"],
            "flip and stir without scratching your pans",
        ),
        "coffee grinder": LeafSpec(
            "Coffee",
            [("type", ["burr", "blade"]), ("color", ["black", "silver"])],
            50,
            ["coffee beans", "pour-over kettle"],
            "grind beans fresh for every cup",
        ),
        "coffee beans": LeafSpec(
            "Coffee",
            [("roast", ["light roast", "medium roast", "dark roast"]), ("size", ["250 g", "1 kg"])],
            14,
            ["coffee beans", "pour-over kettle"],
            "brew a rich, aromatic cup at home",
        ),
        "pour-over kettle": LeafSpec(
            "Coffee",
            [("type", ["electric", "stovetop"]), ("capacity", ["0.6 L", "1 L"])],
            55,
            ["coffee beans", "coffee grinder"],
            "pour a slow, precise stream for pour-over coffee",
        ),
    },
    "Electronics": {
        "mirrorless camera": LeafSpec(
            "Photography",
            [("sensor", ["full-frame", "APS-C"]), ("resolution", ["24 MP", "33 MP"])],
            900,
            ["memory card", "camera lens", "camera bag"],
            "capture sharp photos and 4K video in a compact body",
        ),
        "camera lens": LeafSpec(
            "Photography",
            [("focal length", ["35 mm", "50 mm", "24-70 mm"]), ("aperture", ["f/1.8", "f/2.8"])],
            450,
            ["lens filter", "camera bag"],
            "bring sharp focus and soft background blur",
        ),
        "memory card": LeafSpec(
            "Photography",
            [("capacity", ["64 GB", "128 GB", "256 GB"]), ("speed", ["V30", "V60", "V90"])],
            30,
            ["camera bag", "lens filter"],
            "store photos and video with fast write speeds",
        ),
        "camera bag": LeafSpec(
            "Photography",
            [("style", ["sling", "backpack", "shoulder"]), ("color", ["black", "olive"])],
            70,
            ["lens filter", "camera lens"],
            "protect your camera and lenses on the go",
        ),
        "lens filter": LeafSpec(
            "Photography",
            [("type", ["UV", "polarizing", "ND"]), ("size", ["58 mm", "67 mm"])],
            35,
            ["memory card"],
            "protect the lens and control light and glare",
        ),
        "wireless earbuds": LeafSpec(
            "Audio",
            [("feature", ["noise cancelling", "sport fit"]), ("color", ["white", "black"])],
            120,
            ["phone charger", "charging cable"],
            "play music and take calls without wires",
        ),
        "phone charger": LeafSpec(
            "Accessories",
            [("power", ["20 W", "65 W"]), ("ports", ["USB-C", "dual USB-C"])],
            25,
            ["charging cable"],
            "charge phones and tablets quickly",
        ),
        "charging cable": LeafSpec(
            "Accessories",
            [("type", ["USB-C to USB-C", "USB-C to Lightning"]), ("length", ["1 m", "2 m"])],
            12,
            ["phone charger", "wireless earbuds"],
            "connect and charge your devices",
        ),
    },
    "Books": {
        "mystery novel": LeafSpec(
            "Fiction",
            [("setting", ["Nordic", "Victorian", "small-town"]), ("format", ["paperback", "hardcover"])],
            14,
            ["mystery novel", "thriller novel"],
            "keep you guessing until the last page",
        ),
        "thriller novel": LeafSpec(
            "Fiction",
            [("theme", ["espionage", "legal", "psychological"]), ("format", ["paperback", "hardcover"])],
            15,
            ["thriller novel", "mystery novel"],
            "deliver a fast-paced, gripping story",
        ),
        "cookbook": LeafSpec(
            "Non-fiction",
            [("cuisine", ["Italian", "Japanese", "vegetarian", "baking"]), ("format", ["paperback", "hardcover"])],
            28,
            ["cookbook", "travel guide"],
            "collect tested recipes for home cooks",
        ),
        "travel guide": LeafSpec(
            "Non-fiction",
            [("region", ["Alps", "Japan", "Patagonia", "Scotland"]), ("format", ["paperback", "spiral-bound"])],
            22,
            ["travel guide", "cookbook"],
            "plan routes, sights and stays for your next trip",
        ),
        "science book": LeafSpec(
            "Non-fiction",
            [("topic", ["astronomy", "biology", "physics"]), ("format", ["paperback", "hardcover"])],
            20,
            ["science book"],
            "explain big scientific ideas in plain language",
        ),
    },
    "Pets": {
        "dog food": LeafSpec(
            "Dogs",
            [("flavor", ["chicken", "salmon", "lamb"]), ("formula", ["puppy", "adult", "senior"])],
            45,
            ["dog treats", "dog toy"],
            "give dogs complete, balanced nutrition",
        ),
        "dog treats": LeafSpec(
            "Dogs",
            [("flavor", ["chicken", "peanut butter", "beef"]), ("size", ["small bag", "large bag"])],
            10,
            ["dog toy", "dog food"],
            "reward good behavior during training",
        ),
        "dog toy": LeafSpec(
            "Dogs",
            [("type", ["rope", "squeaky", "chew"]), ("size", ["small", "large"])],
            12,
            ["dog treats"],
            "keep dogs busy and playful",
        ),
        "cat food": LeafSpec(
            "Cats",
            [("flavor", ["tuna", "chicken", "salmon"]), ("formula", ["kitten", "adult", "indoor"])],
            35,
            ["cat litter", "cat toy"],
            "give cats complete, balanced nutrition",
        ),
        "cat litter": LeafSpec(
            "Cats",
            [("type", ["clumping", "silica", "pine"]), ("size", ["10 lb", "20 lb"])],
            20,
            ["cat food", "cat toy"],
            "control odor and clump for easy cleaning",
        ),
        "cat toy": LeafSpec(
            "Cats",
            [("type", ["feather wand", "laser", "catnip mouse"]), ("color", ["pink", "green", "grey"])],
            8,
            ["cat food"],
            "keep indoor cats active and entertained",
        ),
    },
}

# Who each subcategory is for ("Ideal for ...").
AUDIENCE = {
    "Hair Care": "people with a daily hair care routine", "Skin Care": "people building a simple skin care routine",
    "Camping": "campers and backpackers", "Hiking": "hikers and trail runners", "Clothing": "hikers and city commuters",
    "Cutlery": "home cooks", "Cookware": "home cooks", "Coffee": "coffee lovers",
    "Photography": "photographers and content creators", "Audio": "commuters and runners",
    "Accessories": "phone and tablet owners", "Fiction": "readers who love a good plot",
    "Non-fiction": "curious readers", "Dogs": "dog owners", "Cats": "cat owners",
}  # fmt: skip

TIERS = ("budget", "mid-range", "premium")
TIER_PRICE = (0.6, 1.0, 1.9)
TIER_LINES = (("Basics", "Essentials", "Everyday", "Value"), ("Classic", "Select", "Original", "Plus"),
              ("Pro", "Signature", "Elite", "Reserve"))  # fmt: skip
TIER_ADJECTIVES = (("affordable", "no-frills", "value"), ("reliable", "well-made", "dependable"),
                   ("professional-grade", "luxury", "premium"))  # fmt: skip
TIER_BRAND_FAME = (
    ("affordable basics", "great value for money", "no-frills essentials"),
    ("reliable, well-made products", "everyday quality", "dependable design"),
    ("premium materials and craftsmanship", "professional-grade performance", "luxury finishes"),
)
TIER_QUALIFIER = ("on a budget", "who want dependable quality", "who want the very best")
SYLLABLES = ("lu", "ma", "ko", "ri", "ven", "tar", "so", "nel", "qui", "dra", "pe", "zo", "ar", "bel", "cor", "fin")
BRANDS_PER_DEPT = 8  # tiers cycle budget, mid-range, premium: 3 / 3 / 2

# Profiles -> tastes. Occupation sets department weights and tier preference; age bands scale departments.
OCCUPATIONS: dict[str, tuple[dict[str, float], tuple[float, float, float]]] = {
    "student": (
        {"Books": 3, "Electronics": 2, "Beauty": 1.5, "Kitchen": 1, "Outdoors": 1, "Pets": 0.5},
        (0.6, 0.3, 0.1),
    ),
    "engineer": (
        {"Electronics": 3, "Outdoors": 2, "Kitchen": 1.5, "Books": 1, "Beauty": 0.5, "Pets": 1},
        (0.2, 0.4, 0.4),
    ),
    "chef": (
        {"Kitchen": 4, "Books": 1.5, "Beauty": 1, "Outdoors": 0.5, "Electronics": 0.5, "Pets": 1},
        (0.2, 0.4, 0.4),
    ),
    "photographer": (
        {"Electronics": 4, "Outdoors": 2, "Books": 1, "Beauty": 1, "Kitchen": 0.5, "Pets": 0.5},
        (0.15, 0.4, 0.45),
    ),
    "nurse": (
        {"Beauty": 3, "Pets": 2, "Kitchen": 1.5, "Books": 1.5, "Outdoors": 0.5, "Electronics": 0.5},
        (0.35, 0.45, 0.2),
    ),
    "teacher": (
        {"Books": 3, "Kitchen": 2, "Pets": 1.5, "Beauty": 1.5, "Outdoors": 1, "Electronics": 1},
        (0.35, 0.45, 0.2),
    ),
    "mountain guide": (
        {"Outdoors": 4, "Electronics": 1.5, "Books": 1, "Kitchen": 1, "Pets": 1, "Beauty": 0.5},
        (0.25, 0.45, 0.3),
    ),
    "retired": (
        {"Pets": 3, "Books": 2.5, "Kitchen": 2, "Beauty": 1, "Outdoors": 1, "Electronics": 0.5},
        (0.35, 0.4, 0.25),
    ),
}
AGE_BANDS: dict[tuple[int, int], dict[str, float]] = {
    (18, 24): {"Electronics": 1.5, "Beauty": 1.3, "Books": 1.2, "Kitchen": 0.7, "Pets": 0.6},
    (25, 34): {"Outdoors": 1.4, "Electronics": 1.2},
    (35, 44): {"Kitchen": 1.3, "Pets": 1.2},
    (45, 54): {"Kitchen": 1.3, "Books": 1.2},
    (55, 64): {"Pets": 1.4, "Books": 1.4, "Electronics": 0.6},
    (65, 80): {"Pets": 1.6, "Books": 1.6, "Electronics": 0.4, "Outdoors": 0.6},
}
COUNTRIES = ("DE", "FR", "US", "UK", "JP", "BR", "IN", "SE")
GENDERS = (("female", 0.48), ("male", 0.48), ("other", 0.04))
STATED_FAVOURITE_SHARE = 0.4  # share of users whose profile names a favourite category

# Next step of a sequence after a purchase (cumulative thresholds): complement of the
# product type just bought, one of the user's favourite types, a type from a department
# the profile favours, or a random item (noise).
P_COMPLEMENT, P_FAVOURITE, P_PROFILE = 0.50, 0.80, 0.93
P_SAME_BRAND = 0.5  # a complement comes from the brand just bought when that brand makes one
BRAND_BOOST, TIER_BOOST = 4.0, 2.5  # item weight multipliers for favourite brands / the preferred tier
P_ADOPT_BRAND = 0.3  # a purchase makes its brand a favourite with this probability
ZIPF_EXPONENT = 1.0
START_TS = 1_672_531_200  # 2023-01-01 UTC
NEW_ARRIVAL_SHARE = 0.02  # the last items of the catalog never appear in a sequence (cold start for the text path)


def _uniforms(rng: np.random.Generator, block: int) -> Iterator[float]:
    while True:
        yield from rng.random(block).tolist()


class _Stream:
    """Seeded uniforms drawn from numpy in blocks, consumed as Python floats.

    Only ``Generator.random`` is used, and everything else (integers, choices)
    is derived here, so the output does not depend on numpy's implementation of
    other samplers.
    """

    def __init__(self, seed: int, block: int = 1 << 16) -> None:
        self.random: Callable[[], float] = partial(next, _uniforms(np.random.default_rng(seed), block))

    def below(self, n: int) -> int:
        """Uniform integer in [0, n)."""
        return min(int(self.random() * n), n - 1)

    def between(self, lo: int, hi: int) -> int:
        """Uniform integer in [lo, hi]."""
        return lo + self.below(hi - lo + 1)

    def choice(self, seq: Sequence[T]) -> T:
        return seq[self.below(len(seq))]

    def weighted(self, cum: Sequence[float]) -> int:
        """Index drawn in proportion to weights given as their running sum ``cum``."""
        return min(bisect_right(cum, self.random() * cum[-1]), len(cum) - 1)

    def sample_weighted(self, weights: Sequence[float], k: int) -> list[int]:
        """k distinct indices, drawn one after another in proportion to ``weights``."""
        w = list(weights)
        out: list[int] = []
        for _ in range(min(k, sum(1 for x in w if x > 0))):
            j = self.weighted(list(accumulate(w)))
            out.append(j)
            w[j] = 0.0
        return out


@dataclass
class _Item:
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
class _Brand:
    name: str
    dept: str
    tier: int
    price_factor: float


class _Rows(NamedTuple):
    items: list[dict[str, Any]]
    sequences: list[dict[str, Any]]
    users: list[dict[str, Any]]


def _validate(cfg: DemoConfig) -> None:
    if cfg.n_items < 1 or cfg.n_users < 1:
        raise ValueError(f"demo needs at least one item and one user (got {cfg.n_items} items, {cfg.n_users} users)")
    if not 1 <= cfg.min_len <= cfg.max_len:
        raise ValueError(f"demo needs 1 <= min_len <= max_len (got {cfg.min_len}, {cfg.max_len})")


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


def _brands(rs: _Stream) -> list[_Brand]:
    names: set[str] = set()
    out: list[_Brand] = []
    for dept in CATALOG:
        j = 0
        while j < BRANDS_PER_DEPT:
            name = "".join(rs.choice(SYLLABLES) for _ in range(rs.between(2, 3))).capitalize()
            if name in names or len(name) < 5:
                continue
            names.add(name)
            out.append(_Brand(name, dept, j % 3, 0.9 + 0.2 * rs.random()))
            j += 1
    return out


def _title(it: _Item, brands: list[_Brand]) -> str:
    values = list(it.attrs.values())
    head = f"{brands[it.brand].name} {it.line} {_title_case(values[0])} {_title_case(it.leaf)}"
    tail = values[1:] + ([f"pack of {it.pack}"] if it.pack > 1 else [])
    return head + (", " + ", ".join(tail) if tail else "")


def _make_catalog(cfg: DemoConfig, rs: _Stream, brands: list[_Brand]) -> list[_Item]:
    """Items spread round-robin over product types first (every type gets one), then at random."""
    leaves = [(d, leaf) for d, types in CATALOG.items() for leaf in types]
    dept_brands = {d: [b for b, br in enumerate(brands) if br.dept == d] for d in CATALOG}
    items: list[_Item] = []
    titles: set[str] = set()
    n_new = int(NEW_ARRIVAL_SHARE * cfg.n_items)
    for idx in range(cfg.n_items):
        dept, leaf = leaves[idx] if idx < len(leaves) else rs.choice(leaves)
        spec = CATALOG[dept][leaf]
        for _attempt in range(12):
            b = rs.choice(dept_brands[dept])
            tier = brands[b].tier
            attrs = {name: rs.choice(values) for name, values in spec.attributes}
            it = _Item(idx, dept, leaf, b, tier, rs.choice(TIER_LINES[tier]), attrs)
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


def _description(it: _Item, brands: list[_Brand], rs: _Stream, complements: list[str]) -> str:
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


def _features(it: _Item, brands: list[_Brand], complements: list[str]) -> list[str]:
    feats = [f"{k[:1].upper() + k[1:]}: {v}" for k, v in it.attrs.items()]
    feats.append(f"{TIERS[it.tier].capitalize()} {it.leaf} by {brands[it.brand].name}")
    if it.pack > 1:
        feats.append(f"Pack of {it.pack}")
    if complements:
        feats.append(f"Goes with: {', '.join(complements)}")
    return feats


def _item_row(it: _Item, brands: list[_Brand], rs: _Stream, complements: list[str]) -> dict[str, Any]:
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


@dataclass
class _User:
    row: dict[str, Any]
    dept_cum: list[float]  # running sum of department weights (profile-driven)
    fav_leaves: list[str]
    fav_brands: set[int]
    tier: int
    brand_depts: set[str] = field(default_factory=set)  # departments where the user has a favourite brand


def _make_user(u: int, rs: _Stream, depts: list[str], leaves_of: dict[str, list[str]], brands: list[_Brand]) -> _User:
    occupation = rs.choice(list(OCCUPATIONS))
    dept_weights, tier_weights = OCCUPATIONS[occupation]
    band = rs.choice(list(AGE_BANDS))
    age = rs.between(*band)
    w = [dept_weights[d] * AGE_BANDS[band].get(d, 1.0) for d in depts]
    n_fav = 1 + rs.weighted([0.5, 0.85, 1.0])  # 1-3 favourite departments
    fav_depts = [depts[j] for j in rs.sample_weighted(w, n_fav)]
    fav_leaves: list[str] = []
    for d in fav_depts:
        options = leaves_of[d]
        fav_leaves += [options[j] for j in rs.sample_weighted([1.0] * len(options), 1 + rs.below(2))]
    tier = rs.weighted(list(accumulate(tier_weights)))
    fav_brands: set[int] = set()
    for d in fav_depts:
        own = [b for b, br in enumerate(brands) if br.dept == d]  # 8 brands
        picks = rs.sample_weighted([3.0 if brands[b].tier == tier else 1.0 for b in own], 1 + rs.below(2))
        fav_brands.update(own[j] for j in picks)
    gender_cum = list(accumulate(p for _, p in GENDERS))
    row: dict[str, Any] = {
        "user_id": f"U{u:06d}",
        "age": age,
        "gender": GENDERS[rs.weighted(gender_cum)][0],
        "occupation": occupation,
        "country": rs.choice(COUNTRIES),
    }
    if rs.random() < STATED_FAVOURITE_SHARE:
        first = fav_leaves[0]
        row["favorite_category"] = CATALOG[fav_depts[0]][first].subcategory.lower()
    return _User(row, list(accumulate(w)), fav_leaves, fav_brands, tier, {brands[b].dept for b in fav_brands})


class _Shop:
    """Precomputed lookup tables for fast sampling of purchases."""

    def __init__(self, items: list[_Item], rs: _Stream) -> None:
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

    def pick_in_leaf(self, leaf: str, user: _User, used: set[int], rs: _Stream) -> int | None:
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

    def pick_same_brand(self, leaf: str, brand: int, used: set[int], rs: _Stream) -> int | None:
        key = (leaf, brand)
        if key not in self.leaf_brand_items:
            return None
        ids, cum = self.leaf_brand_items[key], self.leaf_brand_cum[key]
        for _ in range(8):
            i = ids[rs.weighted(cum)]
            if i not in used:
                return i
        return None

    def pick_any(self, used: set[int], rs: _Stream) -> int:
        for _ in range(20):
            i = rs.weighted(self.global_cum)
            if i not in used:
                return i
        free = [i for i in range(len(self.items)) if i not in used and not self.items[i].new_arrival]
        return rs.choice(free) if free else rs.weighted(self.global_cum)  # tiny catalog: repeat a purchase


def _sequence(user: _User, shop: _Shop, cfg: DemoConfig, rs: _Stream, depts: list[str]) -> tuple[list[int], list[int]]:
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


def generate(cfg: DemoConfig) -> _Rows:
    """Return (items, sequences, users) as JSON-ready rows."""
    _validate(cfg)
    rs = _Stream(cfg.seed)
    brands = _brands(rs)
    items = _make_catalog(cfg, rs, brands)
    shop = _Shop(items, rs)
    leaves_of = shop.leaves_of
    depts = [d for d in CATALOG if leaves_of[d]]  # departments that have items (all unless the catalog is tiny)
    item_rows = [_item_row(it, brands, rs, shop.complements[it.leaf]) for it in items]
    users: list[dict[str, Any]] = []
    sequences: list[dict[str, Any]] = []
    for u in range(cfg.n_users):
        user = _make_user(u, rs, depts, leaves_of, brands)
        seq, stamps = _sequence(user, shop, cfg, rs, depts)
        users.append(user.row)
        sequences.append(
            {"user_id": user.row["user_id"], "items": [item_rows[i]["item_id"] for i in seq], "timestamps": stamps}
        )
    return _Rows(item_rows, sequences, users)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)


def generate_demo(out_dir: Path, config: DemoConfig | None = None) -> Path:
    """Write ``items.jsonl``, ``sequences.jsonl`` and ``users.jsonl`` into ``out_dir``; return ``out_dir``."""
    cfg = config or DemoConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows = generate(cfg)
    _write_jsonl(out_dir / "items.jsonl", rows.items)
    _write_jsonl(out_dir / "sequences.jsonl", rows.sequences)
    _write_jsonl(out_dir / "users.jsonl", rows.users)
    logger.info(
        "demo data (seed %d): %d items, %d users, %d interactions -> %s in %.1fs",
        cfg.seed,
        len(rows.items),
        len(rows.sequences),
        sum(len(s["items"]) for s in rows.sequences),
        out_dir,
        time.perf_counter() - t0,
    )
    return out_dir


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write the seeded synthetic demo dataset (shared layout).")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--items", type=int, default=DemoConfig.n_items, help="catalog size")
    ap.add_argument("--users", type=int, default=DemoConfig.n_users, help="number of users (one sequence each)")
    ap.add_argument("--seed", type=int, default=DemoConfig.seed)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        generate_demo(Path(args.out), DemoConfig(n_items=args.items, n_users=args.users, seed=args.seed))
    except ValueError as exc:
        ap.error(str(exc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
