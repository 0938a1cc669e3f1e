from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from training.checkpoint import BEST_NAME, LAST_NAME
from training.loop import LoopConfig, SequenceBatches, fit, history_tensors, left_pad, training_examples

# ---------------------------------------------------------------- batching


def test_training_examples_shift_by_one_and_keep_the_last_max_len() -> None:
    ex = training_examples([[1, 2, 3, 4, 5, 6], [7], [8, 9]], max_len=3)
    assert len(ex) == 2  # a 1-item sequence has no next item
    assert ex[0][0].tolist() == [3, 4, 5] and ex[0][1].tolist() == [4, 5, 6]
    assert ex[1][0].tolist() == [8] and ex[1][1].tolist() == [9]


def test_left_pad() -> None:
    ids, mask = left_pad([np.array([1, 2]), np.array([3, 4, 5, 6])])
    assert ids.tolist() == [[0, 0, 1, 2], [3, 4, 5, 6]]
    assert mask.tolist() == [[False, False, True, True], [True, True, True, True]]
    ids, mask = left_pad([np.array([1, 2, 3])], length=2)  # keeps the newest
    assert ids.tolist() == [[2, 3]]


def test_history_tensors_truncate_to_newest_and_reject_empty() -> None:
    ids, mask = history_tensors([(1, 2, 3, 4, 5), (9,)], max_len=3)
    assert ids.tolist() == [[3, 4, 5], [0, 0, 9]]
    assert mask.sum().item() == 4
    with pytest.raises(ValueError, match="empty"):
        history_tensors([(1,), ()], max_len=3)


@pytest.mark.parametrize("mode", ["positions", "shuffle"])
def test_sequence_batches_cover_every_example_once_per_epoch(mode: str) -> None:
    rng = np.random.default_rng(0)
    train = [list(rng.integers(1, 100, size=int(rng.integers(2, 30)))) for _ in range(203)]
    sb = SequenceBatches(train, max_len=20, batch_size=16, seed=3, mode=mode, window=4)
    assert len(sb) == 13
    seen: list[tuple[int, ...]] = []
    for batch in sb.epoch(1):
        assert batch.items.shape == batch.mask.shape == batch.targets.shape
        assert batch.items.shape[1] <= 20
        for row in range(batch.items.shape[0]):
            m = batch.mask[row]
            inp, tgt = batch.items[row][m].tolist(), batch.targets[row][m].tolist()
            assert inp[1:] == tgt[:-1]  # targets are the inputs shifted by one
            assert not m[: int((~m).sum())].any()  # padding on the left only
            seen.append(tuple(inp + tgt[-1:]))
    expected = [tuple(s[-21:]) for s in train]
    assert sorted(seen) == sorted(expected)
    first = [b.items.tolist() for b in sb.epoch(1)]
    assert first == [b.items.tolist() for b in sb.epoch(1)]  # deterministic per epoch (resume)
    assert first != [b.items.tolist() for b in sb.epoch(2)]


# ---------------------------------------------------------------- fit


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 1)
        self.drop = nn.Dropout(0.3)  # makes resume depend on the restored RNG

    def forward(self, x: Tensor) -> Tensor:
        return self.lin(self.drop(x))


def _data() -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    return x, x @ torch.tensor([[1.0], [-2.0], [0.5], [0.0]])


def _batches(epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
    x, y = _data()
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(epoch))
    for i in range(0, 64, 16):
        idx = perm[i : i + 16]
        yield x[idx], y[idx]


def _loss(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    x, y = batch
    return ((model(x) - y) ** 2).mean()


def _neg_mse(model: nn.Module) -> dict[str, float]:
    x, y = _data()
    with torch.no_grad():
        return {"ndcg@10": -float(((model(x) - y) ** 2).mean())}


def test_fit_early_stops_and_restores_the_best_weights() -> None:
    scores = iter([0.1, 0.5, 0.3, 0.2, 0.4, 0.9])
    snapshots: list[Tensor] = []

    def validate(model: nn.Module) -> dict[str, float]:
        assert isinstance(model, Tiny)
        snapshots.append(model.lin.weight.detach().clone())
        return {"ndcg@10": next(scores)}

    model = Tiny()
    res = fit(model, _batches, 4, _loss, validate, LoopConfig(lr=0.05, epochs=10, patience=3, progress=False))
    assert res.stop_reason == "early_stop"
    assert res.epochs == 5 and res.best_epoch == 2 and res.best_metric == 0.5
    torch.testing.assert_close(model.lin.weight, snapshots[1])
    assert not model.training


def test_fit_plateau_factor_cuts_the_lr_after_each_evaluation_without_gain() -> None:
    scores = iter([0.1, 0.5, 0.3, 0.6, 0.2, 0.2])
    model = Tiny()
    cfg = LoopConfig(lr=0.04, epochs=10, patience=2, plateau_factor=0.5, progress=False)
    res = fit(model, _batches, 4, _loss, lambda m: {"ndcg@10": next(scores)}, cfg)
    # epochs 3, 5 and 6 did not improve: each halves the lr of the epochs after it
    assert [h["lr"] for h in res.history] == [0.04, 0.04, 0.04, 0.02, 0.02, 0.01]
    assert res.stop_reason == "early_stop" and res.best_epoch == 4
    with pytest.raises(ValueError, match="plateau_factor"):
        fit(Tiny(), _batches, 4, _loss, _neg_mse, LoopConfig(plateau_factor=0.0, progress=False))


def test_fit_stops_on_the_wall_clock_budget() -> None:
    res = fit(Tiny(), _batches, 4, _loss, _neg_mse, LoopConfig(epochs=100, max_minutes=1e-9, progress=False))
    assert res.stop_reason == "budget"
    assert res.epochs == 1 and res.history[0]["steps"] == 1  # cut after its first step, still validated
    assert res.history[0]["val"] is not None


def test_fit_resumes_from_a_checkpoint_exactly(tmp_path: Path) -> None:
    cfg = LoopConfig(lr=0.05, epochs=4, patience=10, progress=False)
    torch.manual_seed(0)
    straight = Tiny()
    fit(straight, _batches, 4, _loss, _neg_mse, cfg)

    torch.manual_seed(0)
    resumed = Tiny()  # same start as `straight`
    first = fit(resumed, _batches, 4, _loss, _neg_mse, LoopConfig(**{**cfg.__dict__, "epochs": 2}), tmp_path)
    assert first.stop_reason == "max_epochs" and (tmp_path / LAST_NAME).is_file() and (tmp_path / BEST_NAME).is_file()
    fresh = Tiny()  # a new process would build the model from scratch
    second = fit(fresh, _batches, 4, _loss, _neg_mse, cfg, tmp_path)
    assert second.resumed_from == 2 and second.epochs == 4
    assert [h["epoch"] for h in second.history] == [1, 2, 3, 4]
    torch.testing.assert_close(fresh.lin.weight, straight.lin.weight)

    # A checkpoint of another config/dataset is not resumed.
    other = fit(Tiny(), _batches, 4, _loss, _neg_mse, cfg, tmp_path, fingerprint="different")
    assert other.resumed_from == 0


def test_fit_refuses_a_non_finite_loss() -> None:
    def bad(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        return _loss(model, batch) * float("nan")

    with pytest.raises(FloatingPointError):
        fit(Tiny(), _batches, 4, bad, _neg_mse, LoopConfig(progress=False))


def test_sequence_batches_positions_mode_balances_positions_and_cuts_padding() -> None:
    rng = np.random.default_rng(1)
    # Short-sequence data with a long tail, like the Amazon sets: most examples 1-5 items, a few 30-49.
    sizes = np.where(rng.random(2048) < 0.9, rng.integers(2, 7, 2048), rng.integers(30, 51, 2048))
    train = [list(rng.integers(1, 100, size=int(k))) for k in sizes]

    def stats(mode: str) -> tuple[float, float, float]:
        """(padding share, max / mean padded positions per batch, batches per nominal batch count)."""
        sb = SequenceBatches(train, max_len=50, batch_size=32, seed=0, mode=mode, window=16)
        padded, real = [], []
        for batch in sb.epoch(0):
            padded.append(batch.mask.numel())
            real.append(int(batch.mask.sum()))
        return 1 - sum(real) / sum(padded), max(padded) / float(np.mean(padded)), len(padded) / len(sb)

    pad_shuffle, _, n_shuffle = stats("shuffle")
    pad_pos, _, n_pos = stats("positions")
    assert n_shuffle == 1.0
    assert pad_shuffle > 0.5  # one long example pads a whole shuffled batch
    assert pad_pos < 0.1 * pad_shuffle
    # Every "positions" batch is about a nominal batch's worth of positions, so a per-batch mean
    # loss weighs positions evenly; the number of batches stays close to the nominal count.
    sb = SequenceBatches(train, max_len=50, batch_size=32, seed=0, window=16)
    padded = [b.mask.numel() for b in sb.epoch(0)]
    assert max(padded) <= sb.positions_per_batch
    assert np.mean(padded) > 0.7 * sb.positions_per_batch
    assert 0.9 < n_pos < 1.3
    with pytest.raises(ValueError, match="window"):
        SequenceBatches(train, max_len=50, batch_size=32, window=0)
    with pytest.raises(ValueError, match="batching mode"):
        SequenceBatches(train, max_len=50, batch_size=32, mode="bucketed")


def test_fit_backward_step_and_schedule_hooks_match_plain_training() -> None:
    """A step doing loss.backward() itself (returning the detached loss) trains exactly like a plain loss
    step, under either name; schedule sees global steps."""
    cfg = LoopConfig(lr=0.05, epochs=2, patience=10, grad_clip=0.0, progress=False)
    torch.manual_seed(0)
    plain = Tiny()
    fit(plain, _batches, 4, _loss, _neg_mse, cfg)

    def backward(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        loss = _loss(model, batch)
        loss.backward()
        return loss.detach()

    seen: list[int] = []

    def schedule(step: int, optimizer: torch.optim.Optimizer) -> None:
        seen.append(step)
        for group in optimizer.param_groups:
            group["lr"] = 0.05

    torch.manual_seed(0)
    hooked = Tiny()
    res = fit(hooked, _batches, 4, backward, _neg_mse, cfg, schedule=schedule)
    torch.testing.assert_close(hooked.lin.weight, plain.lin.weight)
    assert seen == list(range(8)) and [h["step"] for h in res.history] == [4, 8]
    torch.manual_seed(0)
    aliased = Tiny()
    fit(aliased, _batches, 4, None, _neg_mse, cfg, backward_step=backward)
    torch.testing.assert_close(aliased.lin.weight, plain.lin.weight)
    with pytest.raises(ValueError, match="exactly one"):
        fit(Tiny(), _batches, 4, _loss, _neg_mse, cfg, backward_step=backward)


def test_fit_validate_initial_keeps_the_start_when_training_hurts(tmp_path: Path) -> None:
    scores = iter([0.9, 0.1, 0.2])
    model = Tiny()
    start = model.lin.weight.detach().clone()
    res = fit(
        model,
        _batches,
        4,
        _loss,
        lambda m: {"ndcg@10": next(scores)},
        LoopConfig(lr=0.05, epochs=2, patience=10, progress=False),
        tmp_path,
        validate_initial=True,
    )
    assert [h["epoch"] for h in res.history] == [0, 1, 2] and res.history[0]["steps"] == 0
    assert res.best_epoch == 0 and res.best_metric == 0.9
    torch.testing.assert_close(model.lin.weight, start)
