"""Seeded product-like texts for encoder benchmarks and parity checks.

Independent of the demo shop (``training/data/demo/``) on purpose: parity and
speed are measured on texts the encoder was not tuned on. Texts are built as
:class:`service.core.items.Item` records and rendered with the canonical
``item_text``, so they have the exact shape the encoder sees in production, in
three length profiles:

- ``short``:  keyword titles of 3-8 words (like the Beauty / Sports datasets);
- ``medium``: title + brand + categories + a few attributes (~25-60 tokens);
- ``long``:   everything plus feature bullets and a description, often past
              128 tokens, so truncation is exercised.

Also includes a few odd strings real catalogs have (unicode, digits and units,
upper case, punctuation runs) so the worst case is not flattered.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from service.core.items import Item, item_text

BRANDS = [
    "Acme", "Northpeak", "Lumière", "Vantage Labs", "Kestrel", "Oakridge", "BluePine", "Solenne", "Ferro & Co.",
    "Zephyr", "Halden", "Mitsuwa", "Corvid Outdoor", "Tidewater", "Brightline", "Nordvik", "Aurelia", "Graniteworks",
]  # fmt: skip
PRODUCTS = {
    "Beauty": ["shampoo", "conditioner", "face serum", "moisturizer", "nail polish", "eyeliner", "lip balm",
               "hair dryer", "flat iron", "body lotion", "sunscreen", "makeup brush set", "facial cleanser"],
    "Sports & Outdoors": ["tent", "sleeping bag", "trekking poles", "yoga mat", "dumbbell set", "cycling helmet",
                          "water bottle", "running shoes", "headlamp", "fishing reel", "camping stove"],
    "Industrial & Scientific": ["digital caliper", "safety glasses", "nitrile gloves", "lab beaker set", "multimeter",
                                "soldering station", "hex key set", "pipette tips", "cable ties", "thermocouple"],
    "Home & Kitchen": ["chef knife", "cast iron skillet", "coffee grinder", "food storage containers", "kettle",
                       "cutting board", "blender", "air fryer", "spice rack", "dish rack"],
    "Electronics": ["usb-c charger", "bluetooth speaker", "noise cancelling headphones", "hdmi cable",
                    "wireless mouse", "mechanical keyboard", "portable ssd", "webcam", "power bank"],
}  # fmt: skip
ADJECTIVES = [
    "professional", "lightweight", "waterproof", "organic", "heavy duty", "compact", "ultra soft", "stainless steel",
    "rechargeable", "fragrance free", "ergonomic", "premium", "travel size", "non-slip", "anti-frizz", "adjustable",
]  # fmt: skip
COLORS = ["black", "white", "navy blue", "forest green", "rose gold", "matte grey", "crimson", "ivory", "teal"]
SIZES = ["8 oz", "16 oz", "250 ml", "1 L", "3-pack", "12 count", "XL", "10 x 20 cm", "2.5 mm", "1/4-inch", "500 g"]
MATERIALS = ["aluminium", "bamboo", "silicone", "nylon", "ceramic", "carbon fibre", "cotton", "ABS plastic"]
FEATURE_TEMPLATES = [
    "Made from {material} for long-lasting use",
    "Suitable for {use}",
    "Includes {n} replacement parts",
    "Dimensions: {size}",
    "Backed by a {n}-year limited warranty",
    "Tested to {std} standards",
    "Easy to clean and dishwasher safe",
    "Designed for {use} and everyday carry",
]
USES = ["daily use", "travel", "sensitive skin", "professional workshops", "outdoor adventures", "small kitchens",
        "laboratory work", "home gyms", "cold weather", "beginners and experts alike"]  # fmt: skip
STANDARDS = ["ISO 9001", "ANSI Z87.1", "CE", "FDA", "ASTM F963", "IP67"]
DESCRIPTION_SENTENCES = [
    "This {adj} {product} from {brand} is built for {use}.",
    "Customers love how the {material} body feels in the hand and holds up over years of use.",
    "Every unit is inspected before it leaves the factory, and the packaging is fully recyclable.",
    "Whether you are a beginner or a seasoned pro, it makes the job faster and more comfortable.",
    "Available in {color}, it pairs well with the rest of the {brand} range.",
    "Note: colours may vary slightly from the photos; check the size chart before ordering.",
    "The {size} format fits easily in a drawer, a backpack or a glovebox.",
    "Ideal as a gift — comes in a ready-to-wrap box with a printed user guide in 6 languages.",
]
ODD_TEXTS = [
    "SUPER-DEAL!!! 2x USB-C (60W) -> fast charge *** FREE shipping ***",
    "Crème brûlée scented hand cream — 75 ml / 2.5 fl. oz.",
    "日本製 stainless steel chef knife 210mm (gyuto)",
    "M3 x 0.5 mm x 12 mm socket head cap screws, 18-8 SS, qty 100",
    "a",
    "Größe XL • Farbe: Schwarz • 100% Baumwolle",
    "#1 best-seller 🔥 vitamin c serum 30ml",
    "ASTM D6400 compostable bags 13 gal 50ct",
]


def _pick(rng: np.random.Generator, seq: Sequence[str]) -> str:
    return seq[int(rng.integers(len(seq)))]


def _fill(template: str, rng: np.random.Generator, **known: str) -> str:
    values = {
        "material": _pick(rng, MATERIALS),
        "use": _pick(rng, USES),
        "n": str(int(rng.integers(2, 6))),
        "size": _pick(rng, SIZES),
        "std": _pick(rng, STANDARDS),
        "color": _pick(rng, COLORS),
        "adj": _pick(rng, ADJECTIVES),
        **known,
    }
    return template.format(**values)


def _item(i: int, rng: np.random.Generator, profile: str) -> Item:
    department = _pick(rng, list(PRODUCTS))
    product = _pick(rng, PRODUCTS[department])
    brand = _pick(rng, BRANDS)
    adj = _pick(rng, ADJECTIVES)
    if profile == "short":
        words = [adj, product, _pick(rng, SIZES)]
        if rng.random() < 0.5:
            words.insert(0, brand.lower())
        return Item(item_id=str(i), title=" ".join(words).lower())
    title = f"{brand} {adj.title()} {product.title()}, {_pick(rng, COLORS).title()}, {_pick(rng, SIZES)}"
    categories = (department, product.title())
    attributes = {"color": _pick(rng, COLORS), "material": _pick(rng, MATERIALS)}
    if profile == "medium":
        return Item(item_id=str(i), title=title, brand=brand, categories=categories, attributes=attributes)
    n_feat = int(rng.integers(2, 6))
    features = tuple(_fill(_pick(rng, FEATURE_TEMPLATES), rng) for _ in range(n_feat))
    n_sent = int(rng.integers(2, 8))
    description = " ".join(
        _fill(_pick(rng, DESCRIPTION_SENTENCES), rng, product=product, brand=brand, adj=adj) for _ in range(n_sent)
    )
    return Item(
        item_id=str(i),
        title=title,
        brand=brand,
        categories=categories,
        attributes=attributes,
        features=features,
        description=description,
        price=float(np.round(rng.uniform(3, 400), 2)),
    )


def product_texts(n: int, seed: int = 0, *, mix: tuple[float, float, float] = (0.4, 0.35, 0.25)) -> list[str]:
    """``n`` product-like item texts (short/medium/long in proportions ``mix``), same list for the same seed.

    The first texts include the odd strings above (when ``n`` is large enough), then
    the generated ones shuffled so every length profile appears in any prefix.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = np.random.default_rng(seed)
    p = np.asarray(mix, dtype=np.float64)
    p = p / p.sum()
    n_odd = min(len(ODD_TEXTS), n // 8)
    profiles = rng.choice(["short", "medium", "long"], size=n - n_odd, p=p)
    texts = list(ODD_TEXTS[:n_odd]) + [item_text(_item(i, rng, str(prof))) for i, prof in enumerate(profiles)]
    return texts


def golden_texts() -> list[str]:
    """A fixed handful of texts, one per length profile and a few odd ones, for manifest golden vectors."""
    generated = product_texts(64, seed=1234)
    by_len = sorted(generated[8:], key=len)
    picks = [by_len[0], by_len[len(by_len) // 4], by_len[len(by_len) // 2], by_len[-1]]
    return [
        "wireless noise cancelling headphones",
        "Organic argan oil shampoo for dry hair, 500 ml. Brand: Solenne.",
        *picks,
        ODD_TEXTS[1],
        ODD_TEXTS[3],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description="Print seeded product-like texts (one per line).")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for t in product_texts(args.n, args.seed):
        print(t)


if __name__ == "__main__":
    main()
