from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from service.core.items import item_text
from service.encoding.fake import FakeEncoder
from training.config import DemoConfig, SeqRecConfig
from training.data.demo import generate_demo
from training.data.loader import Dataset, load_dataset
from training.data.split import EvalCase, Split, leave_one_out, train_item_counts
from training.loop import history_tensors, left_pad
from training.losses import full_softmax_ce
from training.metrics import PopularityModel, evaluate
from training.models.seqrec import FusedItemEncoder, SeqRec, attention_mask
from training.seqrec.train import train_seqrec

N, D, T, MAX_LEN = 40, 16, 12, 8


def _text(n: int = N, t: int = T, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, t)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _fused(model: SeqRec) -> FusedItemEncoder:
    assert isinstance(model.items, FusedItemEncoder)
    return model.items


def _model(**kw: object) -> SeqRec:
    torch.manual_seed(0)
    args: dict[str, object] = {
        "hidden": D,
        "n_layers": 2,
        "n_heads": 2,
        "max_len": MAX_LEN,
        "dropout": 0.1,
        "text_vectors": _text(),
        "id_dropout": 0.0,
    }
    args.update(kw)
    return SeqRec(N, **args)  # type: ignore[arg-type]


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    ids, mask = left_pad([np.array([3, 5, 7]), np.array([1, 2, 3, 4, 5, 6, 7, 8]), np.array([9])])
    return torch.from_numpy(ids), torch.from_numpy(mask)


def test_shapes() -> None:
    model = _model().eval()
    ids, mask = _batch()
    states, table = model(ids, mask)
    assert states.shape == (3, 8, D)
    assert table.shape == (N, D)
    assert model.item_reps(ids).shape == (3, 8, D)
    assert model.all_item_reps().shape == (N, D)
    assert model.score(ids, mask).shape == (3, N)
    assert model.tower.last_state(table[ids], mask).shape == (3, D)


def test_causal_a_later_item_does_not_change_earlier_states() -> None:
    model = _model().eval()
    ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
    mask = torch.ones_like(ids)
    changed = ids.clone()
    changed[0, 4] = 30
    with torch.no_grad():
        a, _ = model(ids, mask)
        b, _ = model(changed, mask)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])  # and the change is seen from its own position on


def test_left_padding_does_not_change_the_user_state() -> None:
    """Positions count back from the newest item, so a history batched with longer
    ones (more left padding, other pad ids) gives the same user vector."""
    model = _model().eval()
    history = [4, 8, 15]
    with torch.no_grad():
        table = model.all_item_reps()
        ids_a, mask_a = history_tensors([history], MAX_LEN)
        ids_b = torch.tensor([[17, 23, 0, 11, 4, 8, 15]])  # junk ids under the padding
        mask_b = torch.tensor([[0, 0, 0, 0, 1, 1, 1]])
        a = model.tower.last_state(table[ids_a], mask_a)
        b = model.tower.last_state(table[ids_b], mask_b)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_heavy_left_padding_gives_no_nan_in_states_or_gradients() -> None:
    model = _model().train()
    ids = torch.zeros(4, MAX_LEN, dtype=torch.long)
    mask = torch.zeros(4, MAX_LEN, dtype=torch.bool)
    ids[:, -1] = torch.tensor([1, 2, 3, 4])
    mask[:3, -1] = True  # one real item each; the last row is padding only
    states, table = model(ids, mask)
    assert torch.isfinite(states).all()
    targets = torch.randint(0, N, (4, MAX_LEN))
    loss = full_softmax_ce(states, targets, mask, table)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    allowed = attention_mask(mask)
    assert allowed.any(dim=-1).all()  # every query attends to something (itself at least)


def test_id_dropout_zeroes_the_id_part_of_a_share_of_items_in_training_only() -> None:
    model = _model(id_dropout=0.5)
    text_only = _fused(model).text_table().detach()
    model.train()
    torch.manual_seed(1)
    table = model.items.table().detach()
    dropped = torch.isclose(table, text_only, atol=1e-7).all(dim=1)  # rows equal to the text part alone
    assert 0.25 < dropped.float().mean() < 0.75
    model.eval()
    full = model.items.table().detach()
    assert not torch.isclose(full, text_only, atol=1e-7).all(dim=1).any()
    torch.testing.assert_close(full, model.all_item_reps())
    # Inputs and outputs of one step see the same dropped items: forward returns the table it used.
    model.train()
    ids, mask = _batch()
    torch.manual_seed(2)
    _, step_table = model(ids, mask)
    assert torch.isclose(step_table, text_only, atol=1e-7).all(dim=1).any()


def test_id_dropout_has_no_effect_without_a_text_path() -> None:
    model = _model(use_text=False, text_vectors=None, id_dropout=0.5).train()
    torch.testing.assert_close(model.items.table(), model.all_item_reps())


def test_variants_id_only_text_only_fused() -> None:
    fused = _model()
    id_only = _model(use_text=False, text_vectors=None)
    text_only = _model(use_id=False)
    assert fused.items.id_emb is not None and fused.items.proj is not None
    assert id_only.items.proj is None and id_only.items.id_emb is not None
    assert text_only.items.id_emb is None and text_only.items.proj is not None
    torch.testing.assert_close(text_only.all_item_reps(), text_only.items.proj(torch.from_numpy(_text())))
    assert id_only.items.id_emb is not None
    torch.testing.assert_close(id_only.all_item_reps(), id_only.items.id_emb.weight)
    torch.testing.assert_close(
        fused.all_item_reps(), fused.items.id_emb.weight + fused.items.proj(torch.from_numpy(_text()))
    )
    ids = torch.tensor([[0, 5, 39]])
    for m in (fused, id_only, text_only):  # gather path == table path
        torch.testing.assert_close(m.item_reps(ids), m.all_item_reps()[ids])
    with pytest.raises(ValueError):
        _model(use_id=False, use_text=False)
    with pytest.raises(ValueError):
        _model(text_vectors=None)


def test_untrained_items_are_served_by_their_text_alone() -> None:
    known = np.ones(N, dtype=np.float32)
    known[[3, 7]] = 0
    model = _model(known=known)
    reps = model.all_item_reps().detach()
    text = _fused(model).text_table().detach()
    torch.testing.assert_close(reps[[3, 7]], text[[3, 7]])
    assert not torch.isclose(reps[0], text[0]).all()


def test_item_norm_puts_trained_and_text_only_items_on_one_scale() -> None:
    known = np.ones(N, dtype=np.float32)
    known[[3, 7]] = 0
    raw = _model(known=known)
    normed = _model(known=known, item_norm=2.5)  # same seed: same weights
    reps = normed.all_item_reps().detach()
    torch.testing.assert_close(reps.norm(dim=1), torch.full((N,), 2.5))
    # The direction is the raw fused representation's, untrained items (text alone) included.
    ref = raw.all_item_reps().detach()
    torch.testing.assert_close(reps, 2.5 * ref / ref.norm(dim=1, keepdim=True))
    ids = torch.tensor([[0, 3, 39], [7, 7, 1]])
    torch.testing.assert_close(normed.item_reps(ids), reps[ids])  # gather path == table path
    # ID dropout happens before the normalisation: a dropped item is its unit text direction.
    drop = _model(known=known, item_norm=2.5, id_dropout=0.5).train()
    torch.manual_seed(1)
    table = drop.items.table().detach()
    torch.testing.assert_close(table.norm(dim=1), torch.full((N,), 2.5))
    text = _fused(drop).text_table().detach()
    unit_text = 2.5 * text / text.norm(dim=1, keepdim=True)
    dropped = torch.isclose(table, unit_text, atol=1e-6).all(dim=1)
    assert dropped[[3, 7]].all() and 0.25 < dropped.float().mean() < 0.8
    with pytest.raises(ValueError):
        _model(item_norm=-1.0)


def test_loss_uses_only_positions_with_a_next_item() -> None:
    model = _model().eval()
    ids, mask = _batch()
    targets = torch.randint(0, N, ids.shape)
    states, table = model(ids, mask)
    loss = full_softmax_ce(states, targets, mask, table)
    manual = F.cross_entropy(states[mask] @ table.T, targets[mask])
    torch.testing.assert_close(loss, manual)
    other = targets.clone()
    other[~mask] = (other[~mask] + 1) % N  # change targets under padding only
    torch.testing.assert_close(full_softmax_ce(states, other, mask, table), loss)


# --------------------------------------------------------------- job


def _chain_split(n_items: int, n_users: int, seed: int = 0) -> Split:
    """Users walk item i -> i+1 or i+2: a pattern a sequence model learns in seconds."""
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(n_users):
        s = [int(rng.integers(n_items))]
        for _ in range(int(rng.integers(3, 12))):
            s.append((s[-1] + int(rng.integers(1, 3))) % n_items)
        seqs.append(s)
    return Split(
        n_items=n_items,
        train=[s[:-2] for s in seqs],
        val=[EvalCase(u, tuple(s[:-2]), s[-2]) for u, s in enumerate(seqs)],
        test=[EvalCase(u, tuple(s[:-1]), s[-1]) for u, s in enumerate(seqs)],
    )


@pytest.mark.slow  # trains and exports a real (tiny) model
def test_train_seqrec_writes_the_serving_files_and_metrics(tmp_path: Path) -> None:
    split = _chain_split(60, 200)
    cfg = SeqRecConfig(hidden=16, max_len=10, epochs=3, batch_size=64, max_minutes=1.0)
    out = tmp_path / "seqrec"
    res = train_seqrec(split, _text(60, T), cfg, out, progress=False)
    assert res.spec.user_tower == "seqrec/user_tower.onnx"
    assert res.spec.id_embeddings == "seqrec/id_embeddings.npy"
    assert res.spec.text_projection == "seqrec/text_projection.npz"
    assert res.spec.dim == 16 and res.spec.max_len == 10
    for rel in (res.spec.user_tower, res.spec.id_embeddings, res.spec.text_projection):
        assert (tmp_path / rel).is_file()
    assert (out / "last.pt").is_file() and (out / "best.pt").is_file()
    ids = np.load(out / "id_embeddings.npy")
    assert ids.shape == (60, 16) and ids.dtype == np.float32
    with np.load(out / "text_projection.npz") as z:
        assert z["W"].shape == (T, 16) and z["b"].shape == (16,)
        assert float(z["norm"]) == 0.0  # item_norm off by default
    m = res.metrics
    assert {"val", "test", "popularity_val", "popularity_test", "epochs", "best_epoch"} <= set(m)
    assert set(m["val"]) == {"recall@5", "recall@10", "ndcg@5", "ndcg@10"}
    assert 1 <= m["best_epoch"] <= m["epochs"] <= 3
    assert m["onnx_max_abs_diff"] <= 1e-4
    assert res.train_seconds > 0
    # Even three short epochs learn the chain far beyond popularity.
    assert m["val"]["recall@10"] > 2 * m["popularity_val"]["recall@10"]


@pytest.mark.slow  # trains and exports a real (tiny) model
def test_train_seqrec_id_only_writes_zero_projection(tmp_path: Path) -> None:
    split = _chain_split(30, 60)
    cfg = SeqRecConfig(hidden=8, max_len=6, epochs=1, batch_size=32, use_text=False)
    res = train_seqrec(split, None, cfg, tmp_path / "seqrec", progress=False, resume=False)
    with np.load(tmp_path / "seqrec" / "text_projection.npz") as z:
        assert not z["W"].any() and not z["b"].any()
        assert z["W"].shape == (384, 8)
    assert np.load(tmp_path / "seqrec" / "id_embeddings.npy").any()
    assert res.metrics["variant"] == "id"
    with pytest.raises(ValueError, match="text vectors"):
        train_seqrec(split, None, SeqRecConfig(use_text=True), tmp_path / "x", progress=False)


@pytest.mark.slow
def test_fused_model_learns_demo_data_far_beyond_popularity(tmp_path: Path) -> None:
    """Real pipeline on the synthetic shop: loader -> split -> train -> metrics."""
    torch.set_num_threads(min(2, torch.get_num_threads()))
    data = generate_demo(tmp_path / "demo", DemoConfig(n_items=1000, n_users=2000, seed=1))
    dataset = load_dataset(data)
    split = leave_one_out(dataset)
    text = _demo_text_vectors(dataset)
    cfg = SeqRecConfig(epochs=6, max_minutes=2.0, patience=2)
    res = train_seqrec(split, text, cfg, tmp_path / "seqrec", progress=False)
    pop = evaluate(PopularityModel(train_item_counts(split)), split.val)
    assert pop == pytest.approx(res.metrics["popularity_val"])
    r_model, r_pop = res.metrics["val"]["recall@10"], pop["recall@10"]
    assert r_model >= 1.5 * r_pop and r_model - r_pop >= 0.03, (r_model, r_pop)


def _demo_text_vectors(dataset: Dataset) -> np.ndarray:
    """Cheap real text vectors: the hashing-trick FakeEncoder over each item's canonical text."""
    return FakeEncoder().encode([item_text(it) for it in dataset.items])  # [N, 384]


def test_profiles_are_centred_and_dropout_swaps_a_share_for_the_mean_in_training_only(tmp_path: Path) -> None:
    from training.seqrec.export import export_profile_projection

    p_dim = 6
    model = _model(profile_dim=p_dim, profile_dropout=0.5, dropout=0.0)
    mean = np.full(p_dim, 0.3, dtype=np.float32)
    model.set_profile_mean(mean)
    assert model.profile_proj is not None
    torch.nn.init.normal_(model.profile_proj.bias)  # a trained bias is not zero
    ids, mask = _batch()
    profiles = torch.randn(64, p_dim)
    ids64, mask64 = ids[[0] * 64], mask[[0] * 64]  # the same history for all: only the profile differs
    as_mean = model.eval()(ids64, mask64, torch.from_numpy(mean).expand(64, p_dim))[0][:, -1]
    own = model(ids64, mask64, profiles)[0][:, -1]
    model.train()
    torch.manual_seed(3)
    states = model(ids64, mask64, profiles)[0][:, -1]
    dropped = torch.isclose(states, as_mean, atol=1e-6).all(dim=1)
    kept = torch.isclose(states, own, atol=1e-6).all(dim=1)
    assert 0.25 < dropped.float().mean() < 0.75
    assert bool((dropped ^ kept).all())  # each row is either its own profile's or the mean's
    model.eval()
    torch.testing.assert_close(model(ids64, mask64, profiles)[0][:, -1], own)  # no dropout at inference
    # The export folds the centring into the bias: serving's raw p @ W + b is the model's proj(p - mean).
    with np.load(export_profile_projection(model, profiles.numpy(), tmp_path / "p.npz")) as z:
        served = profiles.numpy() @ z["W"] + z["b"]
    with torch.no_grad():
        trained = model.profile_proj(profiles - torch.from_numpy(mean)).numpy()
    np.testing.assert_allclose(served, trained, rtol=0, atol=1e-5)
    assert "profile_mean" in model.state_dict() and "profile_mean" not in _model().state_dict()
    with pytest.raises(ValueError, match="shape"):
        model.set_profile_mean(np.zeros(p_dim + 1, dtype=np.float32))
    with pytest.raises(ValueError, match="without user profiles"):
        _model().set_profile_mean(mean)
    with pytest.raises(ValueError, match="profile_dropout"):
        _model(profile_dim=p_dim, profile_dropout=1.0)
