"""The demo catalog's vocabulary: departments, product types and the words item text is made of.

Data only (no randomness): :data:`CATALOG` (department -> product type -> :class:`LeafSpec`),
who each subcategory is for, and the price-tier vocabulary that titles, descriptions and
brand names draw from (:mod:`training.data.demo.items`).
"""

from __future__ import annotations

from typing import NamedTuple


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
