"""What the exported ONNX encoder is checked against: the parity texts and their vectors.

Parity = the worst cosine, over the parity set, between an ONNX file's vectors
(:func:`onnx_vectors`, tokenized and pooled exactly like the torch reference) and a fresh
torch model's (:mod:`training.encoder.export` gates fp32 and int8 on it; the int8 search
of :mod:`training.encoder.int8_search` ranks its candidates by it). The parity set
(:func:`parity_set`) is the golden texts + :data:`PARITY_TEXTS` + (when the artifact set
already holds its catalog) a seeded catalog sample + any texts the caller passes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from service.core.items import item_from_dict, item_text
from service.core.pooling import l2_normalize, mean_pool
from training.encoder.quantize import INPUT_NAMES, OUTPUT_NAME, session

# Catalog texts (when the artifact set already holds its catalog) added to the parity set.
CATALOG_PARITY_SAMPLE = 128

DEFAULT_GOLDEN_TEXTS: tuple[str, ...] = (
    "wireless noise cancelling headphones",
    "Organic Argan Oil Shampoo for Dry Hair, 500 ml. Brand: Solenne. Categories: Beauty, Hair Care.",
    "stainless steel chef knife 8 inch",
    "Kestrel 2-Person 3-Season Backpacking Tent. Brand: Kestrel. Categories: Sports & Outdoors, Tents. "
    "Features: Weighs 1.9 kg; Sets up in 3 minutes; Waterproof fly with taped seams. A freestanding dome tent "
    "with two doors and two vestibules, built for long weekends in the hills.",
    "Crème brûlée scented hand cream — 75 ml / 2.5 fl. oz.",
    "M3 x 0.5 mm x 12 mm socket head cap screws, 18-8 SS, qty 100",
    "a",
    "USB-C 65W GaN charger (2 ports) -> laptop & phone *** fast charge ***",
)

# Hand-written product-like texts of every length profile the service meets. Parity is
# measured on these + the golden texts + (when present) a sample of the artifact set's
# catalog + any texts the caller passes.
PARITY_TEXTS: tuple[str, ...] = (
    "rene furterer complexe 5",
    "sedu ionic ceramic tourmaline flat iron",
    "raw mango butter 16 oz",
    "nailtek foundation no 2 ridgefilling",
    "camping stove",
    "yoga mat",
    "LED",
    "4k hdmi cable 2m",
    "Coleman Sundome 4-Person Dome Tent, Green/Navy. Brand: Coleman. Categories: Sports & Outdoors, Camping, Tents.",
    "Digital Caliper 0-150 mm, Stainless Steel, LCD Display. Brand: Neiko. Categories: Industrial & Scientific.",
    "Gorilla Original Gorilla Glue, Waterproof Polyurethane Glue, 8 ounce Bottle, Brown. Brand: Gorilla.",
    "Lavender Body Lotion 250 ml. Brand: Aurelia. Categories: Beauty, Skin Care, Body. Scent: lavender.",
    "Nitrile Exam Gloves, Powder Free, Large, Box of 100. Brand: Medline. Categories: Industrial & Scientific, "
    "Lab & Safety. Features: Latex free; Textured fingertips; 4 mil thickness.",
    "Cast Iron Skillet 12-inch, pre-seasoned. Brand: Lodge. Categories: Home & Kitchen, Cookware. Features: "
    "Pre-seasoned with vegetable oil; Oven safe; Use on the stove, in the oven, on the grill or over a campfire. "
    "This skillet holds heat evenly and becomes better with every use. Hand wash, dry and rub with oil.",
    "Vitamin C Serum for Face with Hyaluronic Acid, 1 fl oz. Brand: Lumière. Categories: Beauty, Skin Care, "
    "Serums. Features: 20% vitamin C; Vegan and cruelty free; Suitable for all skin types; Made in the USA. "
    "Brightens dull skin, evens tone and reduces the look of fine lines. Apply three to five drops every "
    "morning after cleansing and before moisturizer. Store in a cool, dark place. Patch test before first use. "
    "Results may vary. Our formula combines a stable form of vitamin C with botanical extracts and ferulic acid.",
    "Multimeter, auto-ranging, True RMS, 6000 counts. Features: Measures AC/DC voltage and current, resistance, "
    "capacitance, frequency, temperature; Backlit display; Data hold; Auto power off; CAT III 600V rated; "
    "Comes with test leads, thermocouple probe, carrying case and 9V battery. Designed for electricians, "
    "hobbyists and students. Double insulated housing with a rubber holster that survives drops from 2 m. "
    "Large 3.5 inch screen, readable in bright sunlight. Two-year warranty. Please read the manual before use.",
    "#1 best-seller 🔥 vitamin c serum 30ml",
    "日本製 stainless steel chef knife 210mm (gyuto)",
    "Größe XL • Farbe: Schwarz • 100% Baumwolle",
    "SUPER-DEAL!!! 2x USB-C (60W) -> fast charge *** FREE shipping ***",
    "ASTM D6400 compostable bags 13 gal 50ct",
    "x",
)
# Not here: "" (the service rejects blank text) and punctuation-only text ("." or "!!!"). With
# [CLS]/[SEP] alone, or nearly, they are int8's worst cases by far; they are not product text, and
# holding int8 to them would keep more MatMuls in fp32 for every text.


def onnx_vectors(
    path: Path, tokenizer: Any, texts: Sequence[str], *, max_length: int, batch_size: int = 32
) -> np.ndarray:
    """Unit vectors from an ONNX file, tokenized exactly like the torch reference. -> [N, H]"""
    from training.models.text_encoder import length_order

    sess = session(path)
    order = length_order(texts)
    out: np.ndarray | None = None
    for start in range(0, len(texts), batch_size):
        idx = order[start : start + batch_size]
        enc = tokenizer(
            [texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="np"
        )
        ids = enc["input_ids"].astype(np.int64)  # [b, L]
        mask = enc["attention_mask"].astype(np.int64)  # [b, L]
        hidden = sess.run([OUTPUT_NAME], {INPUT_NAMES[0]: ids, INPUT_NAMES[1]: mask})[0]  # [b, L, H]
        vecs = l2_normalize(mean_pool(hidden, mask))  # [b, H]
        if out is None:
            out = np.zeros((len(texts), vecs.shape[1]), dtype=np.float32)
        out[idx] = vecs
    assert out is not None
    return out


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of matching rows. a, b: [N, H] -> [N]"""
    return (l2_normalize(a) * l2_normalize(b)).sum(axis=1)


def catalog_texts(artifact_root: Path, n: int, seed: int = 0) -> list[str]:
    """A seeded sample of item texts from ``artifact_root/catalog/items.jsonl`` when the set has it."""
    path = artifact_root / "catalog" / "items.jsonl"
    if not path.is_file() or n <= 0:
        return []
    texts: list[str] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                texts.append(item_text(item_from_dict(json.loads(line), allow_empty_title=True)))
    if len(texts) <= n:
        return texts
    idx = np.random.default_rng(seed).choice(len(texts), size=n, replace=False)
    return [texts[i] for i in sorted(idx)]


def _dedupe(texts: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(texts))


def parity_set(golden: Sequence[str], artifact_root: Path, extra: Sequence[str] = ()) -> list[str]:
    """Golden texts, :data:`PARITY_TEXTS`, a catalog sample of ``artifact_root`` and ``extra``, first copy kept."""
    return _dedupe([*golden, *PARITY_TEXTS, *catalog_texts(artifact_root, CATALOG_PARITY_SAMPLE), *extra])
