"""Demo users: a profile (age, occupation, country, gender) and the latent tastes drawn from it.

Occupation and age shift which departments people shop in and which price tier they
prefer; each user has 1-3 favourite departments, 1-2 favourite product types in each
and a few favourite brands. Gender is drawn independently and carries no signal by design.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, TypeVar

from training.data.demo.catalog import CATALOG
from training.data.demo.items import Brand
from training.data.demo.stream import Stream

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

T = TypeVar("T")


@dataclass
class User:
    """A profile row and the latent tastes its sequence is drawn from."""

    row: dict[str, Any]
    dept_cum: list[float]  # running sum of department weights (profile-driven)
    fav_leaves: list[str]
    fav_brands: set[int]
    tier: int
    brand_depts: set[str] = field(default_factory=set)  # departments where the user has a favourite brand


def _favourites(rs: Stream, options: list[list[T]], weight: Callable[[T], float]) -> list[T]:
    """1-2 distinct favourites among each favourite department's ``options``, drawn in proportion to
    ``weight``, department after department."""
    out: list[T] = []
    for opts in options:
        out += [opts[j] for j in rs.sample_weighted([weight(o) for o in opts], 1 + rs.below(2))]
    return out


def make_user(u: int, rs: Stream, depts: list[str], leaves_of: dict[str, list[str]], brands: list[Brand]) -> User:
    """User ``u``: profile row, favourite departments / product types / brands and preferred tier."""
    occupation = rs.choice(list(OCCUPATIONS))
    dept_weights, tier_weights = OCCUPATIONS[occupation]
    band = rs.choice(list(AGE_BANDS))
    age = rs.between(*band)
    w = [dept_weights[d] * AGE_BANDS[band].get(d, 1.0) for d in depts]
    n_fav = 1 + rs.weighted([0.5, 0.85, 1.0])  # 1-3 favourite departments
    fav_depts = [depts[j] for j in rs.sample_weighted(w, n_fav)]
    fav_leaves = _favourites(rs, [leaves_of[d] for d in fav_depts], lambda leaf: 1.0)  # product types, uniform
    tier = rs.weighted(list(accumulate(tier_weights)))
    own_brands = [[b for b, br in enumerate(brands) if br.dept == d] for d in fav_depts]  # 8 brands each
    fav_brands = set(_favourites(rs, own_brands, lambda b: 3.0 if brands[b].tier == tier else 1.0))
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
    return User(row, list(accumulate(w)), fav_leaves, fav_brands, tier, {brands[b].dept for b in fav_brands})
