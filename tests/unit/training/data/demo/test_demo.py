"""Seeded demo shop: determinism, valid layout, and the structure a recommender can learn."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from itertools import pairwise
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from training.config import DemoConfig
from training.data.demo import CATALOG, generate, generate_demo, main
from training.data.loader import Dataset, load_dataset
from training.data.split import EvalCase, Split, leave_one_out, train_item_counts

FILES = ("items.jsonl", "sequences.jsonl", "users.jsonl")
SMALL = DemoConfig(n_items=200, n_users=300, seed=7)
STUDY = DemoConfig(n_items=1500, n_users=3000, seed=0)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dataset, Split]:
    ds = load_dataset(generate_demo(tmp_path_factory.mktemp("demo") / "shop", STUDY))
    return ds, leave_one_out(ds)


def _bytes(root: Path) -> dict[str, bytes]:
    return {f: (root / f).read_bytes() for f in FILES}


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    a = _bytes(generate_demo(tmp_path / "a", SMALL))
    b = _bytes(generate_demo(tmp_path / "b", SMALL))
    assert a == b
    c = _bytes(generate_demo(tmp_path / "c", DemoConfig(n_items=200, n_users=300, seed=8)))
    for f in FILES:
        assert a[f] != c[f], f


def test_loads_and_counts_match_config(study: tuple[Dataset, Split]) -> None:
    ds, split = study
    assert (ds.n_items, ds.n_users) == (STUDY.n_items, STUDY.n_users)
    assert ds.users is not None and len(ds.users) == STUDY.n_users
    assert [s.user_id for s in ds.sequences] == sorted(ds.users)
    for s in ds.sequences:
        assert STUDY.min_len <= len(s.items) <= STUDY.max_len
        assert len(set(s.items)) == len(s.items)
        assert s.timestamps is not None and all(b > a for a, b in pairwise(s.timestamps))
    assert len(split.val) == len(split.test) == STUDY.n_users  # min_len >= 3: every user is evaluated
    assert len({it.title for it in ds.items}) == ds.n_items  # titles are unique listings


def test_items_look_like_listings_and_text_carries_the_structure(study: tuple[Dataset, Split]) -> None:
    ds, _ = study
    for it in ds.items:
        dept, sub, leaf = it.categories
        assert dept in CATALOG and leaf.lower() in CATALOG[dept]
        assert CATALOG[dept][leaf.lower()].subcategory == sub
        assert it.title.startswith(it.brand + " ")
        assert leaf.lower() in it.title.lower()
        assert it.brand in it.description and leaf.lower() in it.description
        assert re.search(r"\b(budget|mid-range|premium)\b", it.description)
        assert "Pairs well with" in it.description or not CATALOG[dept][leaf.lower()].complements
        assert it.features and it.attributes and it.price is not None and it.price > 0
    # Brands belong to one department and one tier; each department has all three tiers.
    dept_of_brand: dict[str, set[str]] = {}
    tier_of_brand: dict[str, set[str]] = {}
    prices: dict[tuple[str, str], list[float]] = {}
    for it in ds.items:
        leaf = it.categories[-1].lower()
        (tier,) = [m.group(1) for f in it.features if (m := re.fullmatch(rf"(\S+) {leaf} by {it.brand}", f))]
        dept_of_brand.setdefault(it.brand, set()).add(it.categories[0])
        tier_of_brand.setdefault(it.brand, set()).add(tier)
        assert it.price is not None
        prices.setdefault((leaf, tier), []).append(it.price)
    assert all(len(d) == 1 for d in dept_of_brand.values())
    assert all(len(t) == 1 for t in tier_of_brand.values())
    for dept in CATALOG:
        tiers = {t for b, (t,) in tier_of_brand.items() if dept_of_brand[b] == {dept}}
        assert tiers == {"Budget", "Mid-range", "Premium"}, (dept, tiers)
    # Premium is dearer than budget inside every product type.
    for leaf in {lf for lf, _ in prices}:
        assert np.mean(prices[(leaf, "Premium")]) > np.mean(prices[(leaf, "Budget")]), leaf


def _recall_at_10(scores: npt.NDArray[np.float64], cases: list[EvalCase]) -> float:
    targets = np.array([c.target for c in cases])
    target_scores = scores[np.arange(len(cases)), targets][:, None]  # [B, 1]
    ranks = (scores > target_scores).sum(axis=1)  # [B]
    return float((ranks < 10).mean())


def test_first_order_transitions_beat_popularity(study: tuple[Dataset, Split]) -> None:
    ds, split = study
    leaves = sorted({it.categories[-1] for it in ds.items})
    leaf_of = np.array([leaves.index(it.categories[-1]) for it in ds.items])  # [N]
    counts = train_item_counts(split).astype(np.float64)  # [N]
    tie_break = counts / (counts.max() + 1.0) * 1e-3  # popularity only orders equal transition counts
    transitions = np.zeros((len(leaves), ds.n_items))  # [leaves, N]: prev item's type -> next item
    for s in split.train:
        for a, b in pairwise(s):
            transitions[leaf_of[a], b] += 1
    cases = split.val
    pop = _recall_at_10(np.tile(counts, (len(cases), 1)), cases)
    markov = _recall_at_10(transitions[leaf_of[[c.history[-1] for c in cases]]] + tie_break, cases)
    assert pop > 0.01  # popularity is a real baseline, not zero
    assert markov >= 2.0 * pop, (markov, pop)


def test_brand_loyalty_and_complements_show_in_sequences(study: tuple[Dataset, Split]) -> None:
    ds, split = study
    brand = [it.brand for it in ds.items]
    leaf = [it.categories[-1].lower() for it in ds.items]
    dept = {lf: d for d, types in CATALOG.items() for lf in types}
    pairs = [(a, b) for s in split.train for a, b in pairwise(s)]
    same_brand = np.mean([brand[a] == brand[b] for a, b in pairs])
    shares = np.array(list(Counter(brand[i] for s in split.train for i in s).values()), dtype=float)
    chance = float(((shares / shares.sum()) ** 2).sum())
    assert same_brand > 4 * chance, (same_brand, chance)
    complement = np.mean([leaf[b] in CATALOG[dept[leaf[a]]][leaf[a]].complements for a, b in pairs])
    assert complement > 0.4


def test_profiles_carry_signal(study: tuple[Dataset, Split]) -> None:
    ds, _ = study
    assert ds.users is not None
    by_occupation: dict[str, Counter[str]] = {}
    overall: Counter[str] = Counter()
    for s in ds.sequences:
        depts = [ds.items[ds.item_index[i]].categories[0] for i in s.items]
        by_occupation.setdefault(ds.users[s.user_id]["occupation"], Counter()).update(depts)
        overall.update(depts)
    total = sum(overall.values())
    lift = {
        occ: (c["Kitchen"] / sum(c.values())) / (overall["Kitchen"] / total)
        for occ, c in by_occupation.items()
        if occ in ("chef", "photographer")
    }
    assert lift["chef"] > 1.5 > 1.0 > lift["photographer"], lift
    profiles = list(ds.users.values())
    assert {"age", "gender", "occupation", "country"} <= set(profiles[0])
    stated = sum("favorite_category" in p for p in profiles) / len(profiles)
    assert 0.2 < stated < 0.6


def test_new_arrivals_are_in_the_catalog_but_in_no_sequence(study: tuple[Dataset, Split]) -> None:
    ds, _ = study
    seen = {i for s in ds.sequences for i in s.items}
    unseen = [iid for iid in ds.item_ids if iid not in seen]
    assert len(unseen) >= int(0.02 * STUDY.n_items)
    assert len(unseen) < 0.1 * STUDY.n_items


def test_tiny_and_invalid_configs() -> None:
    rows = generate(DemoConfig(n_items=5, n_users=4, min_len=3, max_len=8, seed=1))
    assert len(rows.items) == 5
    assert all(len(s["items"]) == 5 for s in rows.sequences)  # capped at the catalog size, no repeats
    with pytest.raises(ValueError, match="min_len"):
        generate(DemoConfig(min_len=0))
    with pytest.raises(ValueError, match="at least one item"):
        generate(DemoConfig(n_items=0))


def test_cli_writes_the_shared_layout(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path / "cli"), "--items", "80", "--users", "50", "--seed", "3"]) == 0
    ds = load_dataset(tmp_path / "cli")
    assert (ds.n_items, ds.n_users) == (80, 50)
    first = json.loads((tmp_path / "cli" / "items.jsonl").read_text().splitlines()[0])
    assert {"item_id", "title", "description", "features", "brand", "categories", "price", "attributes"} <= set(first)


def test_module_entry_point_matches_the_library(tmp_path: Path) -> None:
    """``python -m training.data.demo`` (the package's __main__) writes the files generate_demo writes."""
    repo = Path(__file__).resolve().parents[5]
    env = {**os.environ, "PYTHONPATH": str(repo) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    args = ["--out", str(tmp_path / "cli"), "--items", "60", "--users", "40", "--seed", "3"]
    proc = subprocess.run([sys.executable, "-m", "training.data.demo", *args], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lib = generate_demo(tmp_path / "lib", DemoConfig(n_items=60, n_users=40, seed=3))
    assert _bytes(tmp_path / "cli") == _bytes(lib)
    bad = subprocess.run(
        [sys.executable, "-m", "training.data.demo", "--out", str(tmp_path / "x"), "--items", "0"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "at least one item" in bad.stderr
