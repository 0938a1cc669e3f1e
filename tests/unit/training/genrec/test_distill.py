"""Distillation from the dense model: teacher targets, per-level soft targets, the KL term, and training
with it on or off."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from service.core.sid import SidLayout
from service.semantic_ids.decoder import encoder_inputs
from tests.unit.training.genrec.splits import TINY, cyclic_split, table_for
from training.data.split import EvalCase
from training.evaluation.hybrid import dense_config, dense_side
from training.genrec.data import GenRecBatches, training_examples
from training.genrec.distill import TeacherTargets, distill_loss, level_kl, level_targets, teacher_targets
from training.genrec.fit import run_fingerprint, train_genrec
from training.genrec.results import model_name
from training.models.genrec import build_genrec, genrec_loss
from training.seqrec.model import build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# 2-level sids (one code level of 4 + the collision digit), 4 items: tokens 2..5 are level 0, 6..9 level 1.
LAYOUT = SidLayout(n_levels=1, codebook_size=4, collision_capacity=4)
SIDS = np.array([[0, 0], [0, 1], [1, 0], [2, 0]])  # items 0..3
TOKENS = LAYOUT.to_tokens(SIDS)  # [4, 2]


def tiny_level_targets(rows: list[list[int]], probs: list[list[float]], targets: list[int]) -> tuple[np.ndarray, ...]:
    t, m = level_targets(
        torch.from_numpy(TOKENS[np.array(rows)]),
        torch.tensor(probs),
        torch.from_numpy(TOKENS[np.array(targets)]),
        LAYOUT.vocab_size,
    )
    return t.numpy(), m.numpy()


def test_level_targets_follow_the_true_prefix_by_hand() -> None:
    rows = [[1, 2, 3], [0, 1, 2], [0, 1, 3]]
    probs = [[0.5, 0.3, 0.2], [0.6, 0.3, 0.1], [0.25, 0.25, 0.5]]
    targets, mask = tiny_level_targets(rows, probs, targets=[0, 3, 1])
    assert targets.shape == (3, 2, LAYOUT.vocab_size)
    want = np.zeros_like(targets)
    # Example 0, target item 0 = (0, 0). Level 0: every teacher item, summed per code.
    want[0, 0, [2, 3, 4]] = [0.5, 0.3, 0.2]
    # Level 1: only item 1 shares the target's level-0 code 0; its digit is 1 (token 6 + 1): all the mass.
    want[0, 1, 7] = 1.0
    # Example 1, target item 3 = (2, 0): level 0 over codes 0 (items 0 and 1: .9) and 1 (item 2: .1) ...
    want[1, 0, [2, 3]] = [0.9, 0.1]
    # ... and no teacher item has code 2: level 1 has no target (masked, all zeros).
    # Example 2, target item 1 = (0, 1): level 0 codes 0 (.5) and 2 (.5); level 1 items 0, 1 renormalised.
    want[2, 0, [2, 4]] = [0.5, 0.5]
    want[2, 1, [6, 7]] = [0.5, 0.5]
    np.testing.assert_allclose(targets, want, atol=1e-7)
    assert mask.tolist() == [[True, True], [True, False], [True, True]]


def test_level_targets_renormalise_what_a_level_keeps() -> None:
    targets, mask = tiny_level_targets([[0, 1, 2]], [[0.2, 0.6, 0.2]], targets=[1])
    np.testing.assert_allclose(targets[0, 1, [6, 7]], [0.25, 0.75], atol=1e-7)  # .2 and .6 of the kept .8
    assert mask.all()


def test_kl_is_zero_at_the_teacher_and_positive_elsewhere() -> None:
    targets, mask = level_targets(
        torch.from_numpy(TOKENS[np.array([[1, 2, 3], [0, 1, 2]])]),
        torch.tensor([[0.5, 0.3, 0.2], [0.6, 0.3, 0.1]]),
        torch.from_numpy(TOKENS[np.array([0, 3])]),
        LAYOUT.vocab_size,
    )
    # The model's distribution over the whole vocabulary equals the teacher's on every unmasked level;
    # the masked level (example 1, level 1) has arbitrary logits: it must not count.
    logits = torch.where(targets > 0, targets.clamp_min(1e-30).log(), torch.tensor(-1e4))
    logits[1, 1] = torch.randn(LAYOUT.vocab_size)
    assert level_kl(logits, targets, mask).item() == pytest.approx(0.0, abs=1e-6)
    # Any other distribution: positive, and equal to the mean of the per-level KLs computed by hand.
    other = torch.randn(2, 2, LAYOUT.vocab_size, generator=torch.Generator().manual_seed(0))
    kl = level_kl(other, targets, mask).item()
    logp = torch.log_softmax(other, -1)
    by_hand = [
        float(sum(p * (np.log(p) - logp[b, lv, v]) for v, p in enumerate(targets[b, lv].tolist()) if p > 0))
        for b, lv in ((0, 0), (0, 1), (1, 0))
    ]
    assert kl > 0 and kl == pytest.approx(np.mean(by_hand), rel=1e-5)
    # Nothing unmasked: nothing to add.
    assert level_kl(other, targets, torch.zeros_like(mask)).item() == 0.0


def dense_teacher(split_n_items: int, seed: int = 0) -> torch.nn.Module:
    """An (untrained) model of the served dense configuration over random text vectors."""
    torch.manual_seed(seed)
    cfg = replace(dense_config(1.0), max_len=4)
    vectors = np.random.default_rng(seed).normal(size=(split_n_items, 16)).astype(np.float32)
    return build_model(cfg, split_n_items, vectors)


def test_teacher_targets_are_the_served_dense_ranking_of_every_training_example() -> None:
    split = cyclic_split(n_items=30, n_users=40)
    model = dense_teacher(split.n_items)
    teacher = teacher_targets(model, split.train, top=7, temperature=0.5, batch_size=16, progress=False)
    hist, targets, _ = training_examples(split.train, model.max_len)
    assert teacher.rows.shape == (len(targets), 7) and teacher.rows.dtype == np.int32
    assert teacher.probs.dtype == np.float16
    # The same cases through the hybrid evaluation's dense side (the served user vectors and ranking).
    cases = [EvalCase(0, tuple(int(i) for i in h), int(t)) for h, t in zip(hist, targets, strict=True)]
    served = dense_side(model, cases, pool=7)
    np.testing.assert_array_equal(teacher.rows, served.top)
    scores = np.take_along_axis(served.users @ served.table.T, served.top, axis=1)  # [E, 7]
    want = torch.softmax(torch.from_numpy(scores) / 0.5, dim=1).numpy()
    np.testing.assert_allclose(teacher.probs.astype(np.float32), want, atol=2e-3)
    # Only training examples: one row per position of the training sequences (no validation / test target).
    assert len(teacher) == sum(len(s) - 1 for s in split.train if len(s) > 1)
    # More items than the catalog: the whole catalog.
    assert teacher_targets(model, split.train, top=100, temperature=1.0, progress=False).rows.shape[1] == 30


def test_batches_carry_each_examples_teacher_tokens() -> None:
    split = cyclic_split()
    table = table_for(split.n_items)
    tokens = table.tokens()
    _, targets, _ = training_examples(split.train, TINY.max_items)
    # A teacher whose best item is the example's own target, then target + 1.
    rows = np.stack([targets, (targets + 1) % split.n_items], axis=1).astype(np.int32)
    teacher = TeacherTargets(rows, np.tile(np.array([0.75, 0.25], np.float16), (len(rows), 1)), 1.0)
    batches = GenRecBatches(tokens, split.train, TINY, torch.device("cpu"), teacher=teacher)
    plain = GenRecBatches(tokens, split.train, TINY, torch.device("cpu"))
    for b, p in zip(batches.epoch(1), plain.epoch(1), strict=True):
        assert b.teacher_tokens is not None and b.teacher_probs is not None and p.teacher_tokens is None
        assert b.teacher_tokens.shape == (len(b.labels), 2, tokens.shape[1])
        assert torch.equal(b.teacher_tokens[:, 0], b.labels)  # aligned with the example
        assert torch.equal(b.input_ids, p.input_ids) and torch.equal(b.labels, p.labels)
        assert b.teacher_probs.dtype == torch.float32
    with pytest.raises(ValueError, match="teacher targets cover"):
        GenRecBatches(tokens, split.train, TINY, torch.device("cpu"), teacher=TeacherTargets(rows[:-1], rows[:-1], 1.0))


def test_the_distilled_loss_is_the_cross_entropy_plus_the_weighted_kl() -> None:
    split = cyclic_split()
    table = table_for(split.n_items)
    tokens = table.tokens()
    teacher = teacher_targets(dense_teacher(split.n_items), split.train, top=8, temperature=1.0, progress=False)
    batch = next(iter(GenRecBatches(tokens, split.train, TINY, torch.device("cpu"), teacher=teacher).epoch(1)))
    model = build_genrec(table.layout, TINY, seed=0)
    ce = genrec_loss(model, batch)
    # The plain loss is HF's cross-entropy of the labels, nothing else.
    direct = model(**encoder_inputs(model, batch.input_ids), attention_mask=batch.attention_mask, labels=batch.labels)
    assert torch.equal(ce, direct.loss)
    assert batch.teacher_tokens is not None and batch.teacher_probs is not None
    targets, mask = level_targets(batch.teacher_tokens, batch.teacher_probs, batch.labels, table.layout.vocab_size)
    kl = level_kl(direct.logits, targets, mask)
    total = distill_loss(0.5)(model, batch)
    assert kl.item() > 0 and total.item() == pytest.approx(ce.item() + 0.5 * kl.item(), rel=1e-6)
    total.backward()  # one graph: gradients reach the model through both terms
    assert model.get_input_embeddings().weight.grad is not None
    with pytest.raises(ValueError, match="teacher targets"):
        distill_loss(0.5)(model, batch._replace(teacher_tokens=None))


def test_distillation_off_trains_exactly_as_before(tmp_path: Path) -> None:
    """Weight 0: the other distillation knobs and a teacher change nothing (losses, metrics, checkpoints)."""
    split = cyclic_split()
    table = table_for(split.n_items)
    cfg = replace(TINY, epochs=2, eval_every=1)
    teacher = teacher_targets(dense_teacher(split.n_items), split.train, top=5, temperature=3.0, progress=False)
    plain = train_genrec(split, table, cfg, tmp_path / "a")
    knobs = replace(cfg, distill_top=5, distill_temperature=3.0)
    again = train_genrec(split, table, knobs, tmp_path / "b", teacher=teacher)
    assert [h["loss"] for h in plain.fit.history] == [h["loss"] for h in again.fit.history]
    assert plain.metrics == again.metrics and "distill" not in plain.metrics
    assert run_fingerprint(cfg, table, split) == run_fingerprint(knobs, table, split, teacher.digest())
    assert model_name(cfg) == model_name(knobs)
    on = replace(knobs, distill_weight=1.0)
    assert run_fingerprint(on, table, split, teacher.digest()) != run_fingerprint(cfg, table, split)
    other = TeacherTargets(teacher.rows[:, ::-1].copy(), teacher.probs, 3.0)
    assert run_fingerprint(on, table, split, teacher.digest()) != run_fingerprint(on, table, split, other.digest())
    # Targets from a named source (the fitted teacher) are identified by it, not by their float scores.
    named = TeacherTargets(teacher.rows, teacher.probs, 3.0, source="dense run A")
    assert named.digest() == TeacherTargets(other.rows, other.probs, 3.0, source="dense run A").digest()
    assert named.digest() != TeacherTargets(teacher.rows, teacher.probs, 3.0, source="dense run B").digest()


def test_distilled_training_runs_records_and_checks_its_teacher(tmp_path: Path) -> None:
    split = cyclic_split()
    table = table_for(split.n_items)
    cfg = replace(TINY, epochs=2, eval_every=1, distill_weight=1.0, distill_top=6, distill_temperature=2.0)
    teacher = teacher_targets(dense_teacher(split.n_items), split.train, top=6, temperature=2.0, progress=False)
    teacher.val_ndcg = 0.1234
    res = train_genrec(split, table, cfg, tmp_path / "g", tmp_path / "ckpt", teacher=teacher)
    assert res.fit.epochs == 2 and all(np.isfinite(h["loss"]) for h in res.fit.history)
    assert res.metrics["distill"] == {
        "weight": 1.0,
        "top": 6,
        "temperature": 2.0,
        "teacher_seconds": round(teacher.seconds, 1),
        "teacher_val_ndcg@10": 0.1234,
    }
    assert model_name(cfg).endswith(", distilled from the dense model (λ 1, top 6, T 2)")
    with pytest.raises(ValueError, match="needs the dense model's teacher targets"):
        train_genrec(split, table, cfg, tmp_path / "g2")
    with pytest.raises(ValueError, match="the config asks for top 7"):
        train_genrec(split, table, replace(cfg, distill_top=7), tmp_path / "g3", teacher=teacher)
    with pytest.raises(ValueError, match="temperature 1"):
        train_genrec(split, table, replace(cfg, distill_temperature=1.0), tmp_path / "g4", teacher=teacher)
    far = TeacherTargets(teacher.rows + split.n_items, teacher.probs, 2.0)
    with pytest.raises(ValueError, match="beyond the sid table"):
        train_genrec(split, table, cfg, tmp_path / "g5", teacher=far)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("distill_weight", -1.0, "distill_weight must be"),
        ("distill_weight", float("nan"), "distill_weight must be"),
        ("distill_top", 0, "distill_top must be"),
        ("distill_temperature", 0.0, "distill_temperature must be"),
    ],
)
def test_bad_distillation_knobs_are_refused(tmp_path: Path, field: str, value: float, match: str) -> None:
    split = cyclic_split()
    with pytest.raises(ValueError, match=match):
        train_genrec(split, table_for(split.n_items), replace(TINY, **{field: value}), tmp_path / "g")
