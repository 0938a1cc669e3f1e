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

Modules: :mod:`~training.data.demo.catalog` (product types and vocabulary),
:mod:`~training.data.demo.stream` (the seeded uniforms), :mod:`~training.data.demo.items`
(brands, items and their text), :mod:`~training.data.demo.users` (profiles and tastes),
:mod:`~training.data.demo.sequences` (purchases), :mod:`~training.data.demo.generate`
(all of it in order, and the files), :mod:`~training.data.demo.cli` (the command line).
"""

from training.data.demo.catalog import CATALOG, LeafSpec
from training.data.demo.cli import main
from training.data.demo.generate import generate, generate_demo

__all__ = ["CATALOG", "LeafSpec", "generate", "generate_demo", "main"]
