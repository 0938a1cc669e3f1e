"""Seeded synthetic shop: catalog, user profiles and purchase sequences.

The demo is what ``make demo`` serves and what the tests train on, so it is
built to carry the kinds of signal real shops have, each visible in the text:

- catalog: departments -> product types (leaf categories) -> items with a brand
  (budget / mid / premium tier), attributes, a price, a title, a description
  and feature bullets written from templates that name all of these;
- users: a profile (age band, occupation, country, gender) that shifts which
  departments they shop in, 1-3 favourite product types, favourite brands and a
  price tier;
- sequences: popularity skew within each product type, category affinity,
  brand loyalty, price-tier preference and complementary follow-ups (shampoo ->
  conditioner, tent -> sleeping bag, camera -> memory card), plus noise.

Output is byte-identical for the same seed.

    python -m training.data.demo --out var/demo-data [--items N] [--users N] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.config import DemoConfig

logger = logging.getLogger(__name__)

# department -> product type -> (attribute choices, base price, complements)
# Attribute choices are (attribute name, values); complements are product types
# a shopper tends to buy next.
Catalog = dict[str, dict[str, tuple[list[tuple[str, list[str]]], float, list[str]]]]

CATALOG: Catalog = {
    "Beauty": {
        "shampoo": ([("scent", ["argan", "coconut", "tea tree", "lavender"]), ("size", ["250 ml", "500 ml"])], 9, ["conditioner", "hair mask"]),
        "conditioner": ([("scent", ["argan", "coconut", "tea tree", "lavender"]), ("size", ["250 ml", "500 ml"])], 9, ["hair mask", "hair oil"]),
        "hair mask": ([("scent", ["argan", "keratin", "honey"]), ("size", ["200 ml", "300 ml"])], 14, ["hair oil"]),
        "hair oil": ([("scent", ["argan", "jojoba", "rosemary"]), ("size", ["50 ml", "100 ml"])], 16, ["shampoo"]),
        "face cleanser": ([("skin type", ["oily skin", "dry skin", "sensitive skin"]), ("size", ["150 ml"])], 12, ["moisturizer", "serum"]),
        "moisturizer": ([("skin type", ["oily skin", "dry skin", "sensitive skin"]), ("spf", ["SPF 15", "SPF 30", "no SPF"])], 18, ["serum", "sunscreen"]),
        "serum": ([("active", ["vitamin C", "retinol", "hyaluronic acid", "niacinamide"])], 25, ["moisturizer"]),
        "sunscreen": ([("spf", ["SPF 30", "SPF 50"]), ("finish", ["matte", "dewy"])], 15, ["moisturizer"]),
    },
    "Outdoors": {
        "tent": ([("capacity", ["1-person", "2-person", "4-person"]), ("season", ["3-season", "4-season"])], 140, ["sleeping bag", "sleeping pad"]),
        "sleeping bag": ([("rating", ["0°C", "-5°C", "10°C"]), ("fill", ["down", "synthetic"])], 90, ["sleeping pad", "camp pillow"]),
        "sleeping pad": ([("type", ["inflatable", "foam"]), ("r-value", ["R 2", "R 4"])], 60, ["camp pillow"]),
        "camp pillow": ([("type", ["inflatable", "compressible"])], 25, ["headlamp"]),
        "headlamp": ([("brightness", ["300 lumen", "600 lumen"]), ("power", ["rechargeable", "AAA battery"])], 35, ["water filter"]),
        "water filter": ([("type", ["squeeze", "pump", "gravity"])], 40, ["trekking poles"]),
        "trekking poles": ([("material", ["carbon", "aluminium"])], 70, ["hiking backpack"]),
        "hiking backpack": ([("volume", ["30 L", "45 L", "65 L"]), ("color", ["green", "grey", "orange"])], 120, ["tent", "rain jacket"]),
        "rain jacket": ([("fit", ["men's", "women's"]), ("color", ["navy", "red", "black"])], 110, ["hiking backpack"]),
    },
    "Kitchen": {
        "chef knife": ([("blade", ["8 inch", "6 inch"]), ("steel", ["german steel", "damascus steel"])], 60, ["cutting board", "knife sharpener"]),
        "cutting board": ([("material", ["bamboo", "walnut", "plastic"])], 30, ["chef knife"]),
        "knife sharpener": ([("type", ["whetstone", "pull-through"])], 25, ["cutting board"]),
        "frying pan": ([("material", ["cast iron", "nonstick", "stainless steel"]), ("size", ["10 inch", "12 inch"])], 45, ["spatula", "saucepan"]),
        "saucepan": ([("material", ["nonstick", "stainless steel"]), ("size", ["2 qt", "3 qt"])], 40, ["frying pan"]),
        "spatula": ([("material", ["silicone", "wooden"])], 10, ["frying pan"]),
        "coffee grinder": ([("type", ["burr", "blade"]), ("color", ["black", "silver"])], 50, ["coffee beans", "pour-over kettle"]),
        "coffee beans": ([("roast", ["light roast", "medium roast", "dark roast"]), ("size", ["250 g", "1 kg"])], 14, ["coffee beans", "pour-over kettle"]),
        "pour-over kettle": ([("type", ["electric", "stovetop"])], 55, ["coffee beans"]),
    },
    "Electronics": {
        "mirrorless camera": ([("sensor", ["full-frame", "APS-C"]), ("resolution", ["24 MP", "33 MP"])], 900, ["memory card", "camera lens", "camera bag"]),
        "camera lens": ([("focal", ["35 mm", "50 mm", "24-70 mm"]), ("aperture", ["f/1.8", "f/2.8"])], 450, ["camera bag", "lens filter"]),
        "memory card": ([("capacity", ["64 GB", "128 GB", "256 GB"]), ("speed", ["V30", "V60", "V90"])], 30, ["camera bag"]),
        "camera bag": ([("style", ["sling", "backpack"]), ("color", ["black", "olive"])], 70, ["lens filter"]),
        "lens filter": ([("type", ["UV", "polarizing", "ND"]), ("size", ["58 mm", "67 mm"])], 35, ["memory card"]),
        "wireless earbuds": ([("feature", ["noise cancelling", "sport fit"]), ("color", ["white", "black"])], 120, ["phone charger"]),
        "phone charger": ([("power", ["20 W", "65 W"]), ("ports", ["USB-C", "dual USB-C"])], 25, ["charging cable"]),
        "charging cable": ([("length", ["1 m", "2 m"]), ("type", ["USB-C to USB-C", "USB-C to Lightning"])], 12, ["phone charger"]),
    },
    "Books": {
        "mystery novel": ([("format", ["paperback", "hardcover"]), ("setting", ["Nordic", "Victorian", "small-town"])], 14, ["mystery novel", "thriller novel"]),
        "thriller novel": ([("format", ["paperback", "hardcover"]), ("theme", ["espionage", "legal", "psychological"])], 15, ["thriller novel", "mystery novel"]),
        "cookbook": ([("cuisine", ["Italian", "Japanese", "vegetarian", "baking"])], 28, ["cookbook"]),
        "travel guide": ([("region", ["Alps", "Japan", "Patagonia", "Scotland"])], 22, ["travel guide"]),
        "science book": ([("topic", ["astronomy", "biology", "physics"])], 20, ["science book"]),
    },
    "Pets": {
        "dog food": ([("formula", ["puppy", "adult", "senior"]), ("flavor", ["chicken", "salmon", "lamb"])], 45, ["dog treats", "dog toy"]),
        "dog treats": ([("flavor", ["chicken", "peanut butter", "beef"])], 10, ["dog toy"]),
        "dog toy": ([("type", ["rope", "squeaky", "chew"])], 12, ["dog treats"]),
        "cat food": ([("formula", ["kitten", "adult", "indoor"]), ("flavor", ["tuna", "chicken"])], 35, ["cat litter", "cat toy"]),
        "cat litter": ([("type", ["clumping", "silica", "pine"])], 20, ["cat food"]),
        "cat toy": ([("type", ["feather wand", "laser", "catnip mouse"])], 8, ["cat food"]),
    },
}

SUBCATEGORY = {
    "shampoo": "Hair Care", "conditioner": "Hair Care", "hair mask": "Hair Care", "hair oil": "Hair Care",
    "face cleanser": "Skin Care", "moisturizer": "Skin Care", "serum": "Skin Care", "sunscreen": "Skin Care",
    "tent": "Camping", "sleeping bag": "Camping", "sleeping pad": "Camping", "camp pillow": "Camping",
    "headlamp": "Hiking", "water filter": "Hiking", "trekking poles": "Hiking", "hiking backpack": "Hiking",
    "rain jacket": "Clothing",
    "chef knife": "Cutlery", "cutting board": "Cutlery", "knife sharpener": "Cutlery",
    "frying pan": "Cookware", "saucepan": "Cookware", "spatula": "Cookware",
    "coffee grinder": "Coffee", "coffee beans": "Coffee", "pour-over kettle": "Coffee",
    "mirrorless camera": "Photography", "camera lens": "Photography", "memory card": "Photography",
    "camera bag": "Photography", "lens filter": "Photography",
    "wireless earbuds": "Audio", "phone charger": "Accessories", "charging cable": "Accessories",
    "mystery novel": "Fiction", "thriller novel": "Fiction", "cookbook": "Non-fiction",
    "travel guide": "Non-fiction", "science book": "Non-fiction",
    "dog food": "Dogs", "dog treats": "Dogs", "dog toy": "Dogs",
    "cat food": "Cats", "cat litter": "Cats", "cat toy": "Cats",
}  # fmt: skip

TIERS = ("budget", "mid-range", "premium")
TIER_PRICE = (0.6, 1.0, 1.9)
TIER_WORDS = {
    "budget": ["affordable", "everyday", "value"],
    "mid-range": ["reliable", "well-made", "popular"],
    "premium": ["professional-grade", "luxury", "premium"],
}
SYLLABLES = ["lu", "ma", "ko", "ri", "ven", "tar", "so", "nel", "qui", "dra", "pe", "zo", "ar", "bel", "cor", "fin"]

OCCUPATIONS = {
    # occupation -> department weights (profiles carry signal about what people buy)
    "student": {"Books": 3, "Electronics": 2, "Beauty": 1.5, "Kitchen": 1, "Outdoors": 1, "Pets": 0.5},
    "engineer": {"Electronics": 3, "Outdoors": 2, "Kitchen": 1.5, "Books": 1, "Beauty": 0.5, "Pets": 1},
    "chef": {"Kitchen": 4, "Books": 1.5, "Beauty": 1, "Outdoors": 0.5, "Electronics": 0.5, "Pets": 1},
    "photographer": {"Electronics": 4, "Outdoors": 2, "Books": 1, "Beauty": 1, "Kitchen": 0.5, "Pets": 0.5},
    "nurse": {"Beauty": 3, "Pets": 2, "Kitchen": 1.5, "Books": 1.5, "Outdoors": 0.5, "Electronics": 0.5},
    "teacher": {"Books": 3, "Kitchen": 2, "Pets": 1.5, "Beauty": 1.5, "Outdoors": 1, "Electronics": 1},
    "guide": {"Outdoors": 4, "Electronics": 1.5, "Books": 1, "Kitchen": 1, "Pets": 1, "Beauty": 0.5},
    "retired": {"Pets": 3, "Books": 2.5, "Kitchen": 2, "Beauty": 1, "Outdoors": 1, "Electronics": 0.5},
}
AGE_BANDS = ["18-24", "25-34", "35-44", "45-54", "55-64", "65+"]
COUNTRIES = ["DE", "FR", "US", "UK", "JP", "BR", "IN", "SE"]


@dataclass
class _Item:
    item_id: str
    dept: str
    leaf: str
    brand: str
    tier: int
    attrs: dict[str, str]
    price: float


def _brand_names(rng: np.random.Generator, n: int) -> list[str]:
    names: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        k = int(rng.integers(2, 4))
        name = "".join(SYLLABLES[int(j)] for j in rng.integers(0, len(SYLLABLES), size=k)).capitalize()
        if name not in names and len(name) > 3:
            names.add(name)
            out.append(name)
    return out


def _title(it: _Item) -> str:
    attr_words = " ".join(v for v in it.attrs.values())
    return f"{it.brand} {attr_words} {it.leaf}"


def _description(it: _Item, rng: np.random.Generator) -> str:
    tier = TIERS[it.tier]
    adj = TIER_WORDS[tier][int(rng.integers(0, 3))]
    complements = CATALOG[it.dept][it.leaf][2]
    attr_text = ", ".join(f"{k} {v}" for k, v in it.attrs.items())
    sentences = [
        f"A {adj} {it.leaf} from {it.brand}, part of our {SUBCATEGORY[it.leaf].lower()} range in {it.dept.lower()}.",
        f"This {tier} {it.leaf} comes with {attr_text}.",
        f"Pairs well with a {complements[0]}." if complements else "",
        [
            f"Made for people who care about {it.dept.lower()} and want a {it.leaf} that lasts.",
            f"{it.brand} designs every {it.leaf} to be easy to use from day one.",
            f"Customers choose this {it.leaf} for its {adj} quality at {it.price:.0f} dollars.",
        ][int(rng.integers(0, 3))],
    ]
    return " ".join(s for s in sentences if s)


def _features(it: _Item) -> list[str]:
    feats = [f"{k.capitalize()}: {v}" for k, v in it.attrs.items()]
    feats.append(f"{TIERS[it.tier].capitalize()} {it.leaf} by {it.brand}")
    return feats


def _make_catalog(cfg: DemoConfig, rng: np.random.Generator) -> list[_Item]:
    leaves = [(d, leaf) for d, ls in CATALOG.items() for leaf in ls]
    dept_brands: dict[str, list[tuple[str, int]]] = {}
    all_brands = _brand_names(rng, 8 * len(CATALOG))
    for k, dept in enumerate(CATALOG):
        names = all_brands[8 * k : 8 * (k + 1)]
        dept_brands[dept] = [(n, j % 3) for j, n in enumerate(names)]
    items: list[_Item] = []
    seen_titles: set[str] = set()
    for idx in range(cfg.n_items):
        dept, leaf = leaves[idx % len(leaves)] if idx < len(leaves) else leaves[int(rng.integers(0, len(leaves)))]
        attrs_spec, base_price, _ = CATALOG[dept][leaf]
        for _attempt in range(8):
            brand, tier = dept_brands[dept][int(rng.integers(0, 8))]
            attrs = {name: vals[int(rng.integers(0, len(vals)))] for name, vals in attrs_spec}
            it = _Item(f"D{idx:06d}", dept, leaf, brand, tier, attrs, 0.0)
            if _title(it) not in seen_titles:
                break
        seen_titles.add(_title(it))
        it.price = round(float(base_price * TIER_PRICE[tier] * rng.uniform(0.85, 1.2)), 2)
        items.append(it)
    return items


def _user_profiles(cfg: DemoConfig, rng: np.random.Generator) -> list[dict[str, Any]]:
    occupations = list(OCCUPATIONS)
    users = []
    for u in range(cfg.n_users):
        occ = occupations[int(rng.integers(0, len(occupations)))]
        age = AGE_BANDS[int(rng.integers(0, len(AGE_BANDS)))]
        users.append(
            {
                "user_id": f"U{u:06d}",
                "age": age,
                "gender": ["female", "male", "other"][int(rng.choice(3, p=[0.48, 0.48, 0.04]))],
                "occupation": occ,
                "country": COUNTRIES[int(rng.integers(0, len(COUNTRIES)))],
            }
        )
    return users


def generate(cfg: DemoConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Return (items, sequences, users) as JSON-ready rows."""
    rng = np.random.default_rng(cfg.seed)
    items = _make_catalog(cfg, rng)
    depts = list(CATALOG)
    by_leaf: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        by_leaf.setdefault(it.leaf, []).append(i)
    leaf_dept = {leaf: d for d, ls in CATALOG.items() for leaf in ls}
    # Zipf popularity inside each product type.
    popularity = np.zeros(len(items))
    for ids in by_leaf.values():
        ranks = rng.permutation(len(ids)) + 1
        popularity[ids] = 1.0 / ranks**0.9
    tiers = np.array([it.tier for it in items])
    brand_names = sorted({it.brand for it in items})
    brand_of = np.array([brand_names.index(it.brand) for it in items])  # [n_items] brand id
    leaf_ids = {leaf: np.asarray(ids) for leaf, ids in by_leaf.items()}

    profiles = _user_profiles(cfg, rng)
    sequences: list[dict[str, Any]] = []
    t0 = 1_600_000_000
    used = np.zeros(len(items), dtype=bool)
    for prof in profiles:
        w = np.array([OCCUPATIONS[prof["occupation"]][d] for d in depts], dtype=float)
        if prof["age"] in ("55-64", "65+"):
            w[depts.index("Electronics")] *= 0.5
            w[depts.index("Pets")] *= 1.5
        n_fav_depts = int(rng.integers(1, 3))
        fav_depts = list(rng.choice(len(depts), size=n_fav_depts, replace=False, p=w / w.sum()))
        fav_leaves = [
            leaf for d in fav_depts for leaf in rng.choice(list(CATALOG[depts[d]]), size=2, replace=False).tolist()
        ]
        fav_brand = np.zeros(len(brand_names), dtype=bool)
        fav_brand[brand_of[rng.choice(len(items), size=3, p=popularity / popularity.sum())]] = True
        fav_brand[brand_of[by_leaf[fav_leaves[0]][0]]] = True
        tier_pref = int(rng.choice(3, p=[0.35, 0.4, 0.25]))
        length = int(min(cfg.max_len, cfg.min_len + rng.geometric(0.15) - 1))
        seq: list[int] = []
        leaf = fav_leaves[int(rng.integers(0, len(fav_leaves)))]
        ts = t0 + int(rng.integers(0, 10_000_000))
        stamps: list[int] = []
        while len(seq) < length:
            cand = leaf_ids[leaf]
            p = popularity[cand] * np.where(fav_brand[brand_of[cand]], 4.0, 1.0)
            p = p * np.where(tiers[cand] == tier_pref, 2.5, 1.0)
            p[used[cand]] = 0.0
            total = p.sum()
            if total <= 0:
                leaf = fav_leaves[int(rng.integers(0, len(fav_leaves)))]
                continue
            k = min(int(np.searchsorted(np.cumsum(p), rng.random() * total, side="right")), len(cand) - 1)
            pick = int(cand[k])
            seq.append(pick)
            used[pick] = True
            fav_brand[brand_of[pick]] = True  # loyalty grows with purchases
            ts += int(rng.integers(3_600, 30 * 86_400))
            stamps.append(ts)
            r = rng.random()
            complements = CATALOG[leaf_dept[leaf]][leaf][2]
            if r < 0.5 and complements:
                leaf = complements[int(rng.integers(0, len(complements)))]
            elif r < 0.85:
                leaf = fav_leaves[int(rng.integers(0, len(fav_leaves)))]
            else:
                d = depts[int(rng.choice(len(depts), p=w / w.sum()))]
                leaf = list(CATALOG[d])[int(rng.integers(0, len(CATALOG[d])))]
        used[seq] = False
        sequences.append({"user_id": prof["user_id"], "items": [items[i].item_id for i in seq], "timestamps": stamps})

    item_rows = []
    for it in items:
        item_rows.append(
            {
                "item_id": it.item_id,
                "title": _title(it),
                "description": _description(it, rng),
                "features": _features(it),
                "brand": it.brand,
                "categories": [it.dept, SUBCATEGORY[it.leaf], it.leaf.title()],
                "price": it.price,
                "attributes": it.attrs,
            }
        )
    return item_rows, sequences, profiles


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=False) + "\n")
    tmp.replace(path)


def generate_demo(out_dir: Path, config: DemoConfig | None = None) -> Path:
    """Write items.jsonl, sequences.jsonl and users.jsonl into ``out_dir``."""
    cfg = config or DemoConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    items, sequences, users = generate(cfg)
    _write_jsonl(out_dir / "items.jsonl", items)
    _write_jsonl(out_dir / "sequences.jsonl", sequences)
    _write_jsonl(out_dir / "users.jsonl", users)
    logger.info(
        "demo data: %d items, %d users, %d interactions -> %s",
        len(items),
        len(sequences),
        sum(len(s["items"]) for s in sequences),
        out_dir,
    )
    return out_dir


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write the seeded synthetic demo dataset (shared layout).")
    ap.add_argument("--out", required=True)
    ap.add_argument("--items", type=int, default=DemoConfig.n_items)
    ap.add_argument("--users", type=int, default=DemoConfig.n_users)
    ap.add_argument("--seed", type=int, default=DemoConfig.seed)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    generate_demo(Path(args.out), DemoConfig(n_items=args.items, n_users=args.users, seed=args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
