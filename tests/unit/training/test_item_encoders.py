"""Item encoders plugged into SeqRec, user profiles, and the cold-item softmax exclusion."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.config import SeqRecConfig
from training.loop import SeqBatch, left_pad
from training.models.item_encoders import CodeItemEncoder, TextAdaptorItemEncoder, WhiteningMoE
from training.models.seqrec import FusedItemEncoder, SeqRec
from training.seqrec.fit import ProfileBatch, ProfileSequenceBatches, TextNegatives, seqrec_loss, text_neighbours
from training.seqrec.model import build_item_encoder, build_model

N, D, T = 30, 8, 12


def _text(n: int = N, t: int = T, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, t)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _seqrec(items: torch.nn.Module | None = None, **kw: object) -> SeqRec:
    torch.manual_seed(0)
    args: dict[str, object] = {"hidden": D, "n_layers": 1, "n_heads": 2, "max_len": 6, "dropout": 0.0}
    args.update(kw)
    return SeqRec(N, item_encoder=items, **args)  # type: ignore[arg-type]


def test_whitening_moe_with_one_expert_is_a_centred_linear_map() -> None:
    torch.manual_seed(0)
    moe = WhiteningMoE(T, D, n_experts=1)
    with torch.no_grad():
        moe.bias.normal_()
    x = torch.from_numpy(_text())
    want = (x - moe.bias[0]) @ moe.weight[0]  # [N, D]
    torch.testing.assert_close(moe(x), want, rtol=1e-5, atol=1e-5)


def test_whitening_moe_mixes_experts_by_a_softmax_gate() -> None:
    torch.manual_seed(0)
    moe = WhiteningMoE(T, D, n_experts=3)
    with torch.no_grad():
        moe.gate.weight.normal_()
        moe.bias.normal_()
    x = torch.from_numpy(_text(5))
    gates = torch.softmax(moe.gate(x), dim=-1)  # [5, 3]
    experts = torch.stack([(x - moe.bias[e]) @ moe.weight[e] for e in range(3)], dim=1)  # [5, 3, D]
    torch.testing.assert_close(moe(x), (gates[..., None] * experts).sum(1), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="n_experts"):
        WhiteningMoE(T, D, n_experts=0)


def test_text_adaptor_scores_any_item_with_text() -> None:
    enc = TextAdaptorItemEncoder(_text(), D, n_experts=2).eval()
    table = enc.table()
    assert table.shape == (N, D)
    ids = torch.tensor([[0, 3], [29, 7]])
    torch.testing.assert_close(enc(ids), table[ids])
    # Items differ exactly through their text: equal text -> equal representation.
    text = _text()
    text[5] = text[6]
    enc2 = TextAdaptorItemEncoder(text, D).eval()
    torch.testing.assert_close(enc2.table()[5], enc2.table()[6])
    assert not torch.allclose(enc2.table()[5], enc2.table()[7])


def test_code_lookup_is_the_sum_of_code_embeddings() -> None:
    codes = np.random.default_rng(0).integers(0, 5, size=(N, 3))
    codes[9] = codes[4]  # two items with identical codes
    enc = CodeItemEncoder(codes, n_codes=5, dim=D)
    w = enc.code_emb.weight
    want = torch.stack([w[codes[i, 0]] + w[5 + codes[i, 1]] + w[10 + codes[i, 2]] for i in range(N)])
    torch.testing.assert_close(enc.table(), want)
    ids = torch.tensor([1, 4, 9])
    torch.testing.assert_close(enc(ids), want[ids])
    torch.testing.assert_close(enc.table()[4], enc.table()[9])
    assert "codes" in enc.state_dict()  # the codes travel with the weights
    with pytest.raises(ValueError, match=r"in \[0, 5\)"):
        CodeItemEncoder(codes + 1, n_codes=5, dim=D)


def test_build_item_encoder_by_name() -> None:
    text = _text()
    assert isinstance(build_item_encoder(SeqRecConfig(hidden=D), N, text), FusedItemEncoder)
    assert isinstance(
        build_item_encoder(SeqRecConfig(hidden=D, item_encoder="text_moe"), N, text), TextAdaptorItemEncoder
    )
    pq = build_item_encoder(SeqRecConfig(hidden=D, item_encoder="pq", pq_m=4, pq_k=8, pq_iters=3), N, text)
    assert isinstance(pq, CodeItemEncoder) and pq.codes.shape == (N, 4)
    with pytest.raises(ValueError, match="unknown item_encoder"):
        build_item_encoder(SeqRecConfig(item_encoder="nope"), N, text)
    with pytest.raises(ValueError, match="needs text vectors"):
        build_item_encoder(SeqRecConfig(item_encoder="pq"), N, None)


@pytest.mark.parametrize("kind", ["text_moe", "pq"])
def test_any_item_encoder_trains_inside_seqrec(kind: str) -> None:
    torch.manual_seed(0)
    cfg = SeqRecConfig(
        hidden=D, n_layers=1, max_len=6, item_encoder=kind, pq_m=4, pq_k=8, pq_iters=3, dropout=0.0, adaptor_dropout=0.0
    )
    model = build_model(cfg, N, _text()).train()
    ids, mask = left_pad([np.array([1, 2, 3]), np.array([4, 5])])
    batch = SeqBatch(torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy((ids + 1) % N))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = float(seqrec_loss(model, batch).detach())
    for _ in range(40):
        opt.zero_grad()
        seqrec_loss(model, batch).backward()
        opt.step()
    assert float(seqrec_loss(model, batch).detach()) < 0.5 * first
    assert model.score(torch.from_numpy(ids), torch.from_numpy(mask)).shape == (2, N)


def test_seqrec_rejects_an_item_encoder_of_another_shape() -> None:
    with pytest.raises(ValueError, match="item_encoder"):
        _seqrec(TextAdaptorItemEncoder(_text(), D + 1))


def test_profile_changes_the_user_state_and_is_required() -> None:
    model = _seqrec(FusedItemEncoder(N, D, _text()), profile_dim=T).eval()
    ids, mask = (torch.from_numpy(a) for a in left_pad([np.array([1, 2, 3])]))
    p1, p2 = torch.from_numpy(_text(1, seed=1)), torch.from_numpy(_text(1, seed=2))
    with torch.no_grad():
        assert model.profile_proj is not None
        model.profile_proj.weight.normal_()
    assert not torch.allclose(model.score(ids, mask, profile=p1), model.score(ids, mask, profile=p2))
    # Serving can add the projected profile to the item reps it feeds the exported tower.
    with torch.no_grad():
        table = model.all_item_reps()
        reps = table[ids] + model.profile_proj(p1)[:, None, :]
        torch.testing.assert_close(model.tower.last_state(reps, mask) @ table.T, model.score(ids, mask, profile=p1))
    with pytest.raises(ValueError, match="pass profile"):
        model(ids, mask)
    with pytest.raises(ValueError, match="without user profiles"):
        _seqrec(FusedItemEncoder(N, D, _text()))(ids, mask, p1)


def test_profile_batches_carry_each_example_users_profile() -> None:
    train = [[1, 2, 3], [4], [5, 6], [7, 8, 9, 1]]  # user 1 has no training example
    profiles = np.arange(4, dtype=np.float32)[:, None] * np.ones((1, 3), dtype=np.float32)  # row u = u
    batches = ProfileSequenceBatches(train, profiles, max_len=5, batch_size=2, seed=0)
    seen: list[int] = []
    for b in batches.epoch(1):
        assert isinstance(b, ProfileBatch)
        for row in range(b.items.shape[0]):
            last_input = int(b.items[row, -1])
            user = {2: 0, 5: 2, 9: 3}[last_input]  # inputs are s[:-1]: its last item names the user
            assert float(b.profile[row, 0]) == user
            seen.append(user)
    assert sorted(seen) == [0, 2, 3]
    with pytest.raises(ValueError, match="profiles must be"):
        ProfileSequenceBatches(train, profiles[:3], max_len=5, batch_size=2)


def test_excluded_items_leave_the_softmax() -> None:
    model = _seqrec(FusedItemEncoder(N, D, _text())).eval()
    ids, mask = left_pad([np.array([1, 2, 3]), np.array([4, 5])])
    targets = (ids + 1) % N
    batch = SeqBatch(torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(targets))
    exclude = torch.zeros(N, dtype=torch.bool)
    exclude[[10, 20, 29]] = True
    loss = seqrec_loss(model, batch, exclude)
    # Same as the cross-entropy over the catalog without those items (targets re-indexed).
    keep_items = torch.nonzero(~exclude).squeeze(1)
    remap = torch.full((N,), -1, dtype=torch.long)
    remap[keep_items] = torch.arange(len(keep_items))
    states, table = model(batch.items, batch.mask)
    m = batch.mask
    want = F.cross_entropy(states[m] @ table[keep_items].T, remap[batch.targets[m]])
    torch.testing.assert_close(loss, want)
    assert float(loss.detach()) < float(seqrec_loss(model, batch).detach())  # fewer competitors


def test_text_neighbours_match_brute_force_and_skip_self_and_excluded() -> None:
    text = _text()
    exclude = np.zeros(N, dtype=bool)
    exclude[[2, 11]] = True
    got = text_neighbours(text, 5, exclude, chunk=7)
    sims = text @ text.T
    for i in range(N):
        order = [j for j in np.argsort(-sims[i], kind="stable") if j != i and not exclude[j]][:5]
        np.testing.assert_allclose(sims[i, got[i]], sims[i, order], rtol=1e-5)
        assert i not in got[i] and not exclude[got[i]].any()
    with pytest.raises(ValueError, match="1 <= k"):
        text_neighbours(text, N)


def test_text_negatives_add_a_hard_negative_term() -> None:
    model = _seqrec(FusedItemEncoder(N, D, _text())).eval()
    ids, mask = left_pad([np.array([1, 2, 3]), np.array([4, 5])])
    targets = (ids + 1) % N
    batch = SeqBatch(torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(targets))
    pool = torch.from_numpy(text_neighbours(_text(), 1))  # one neighbour: the draw is deterministic
    base = seqrec_loss(model, batch)
    with_neg = seqrec_loss(model, batch, None, TextNegatives(pool, k=3, weight=0.5))
    states, table = model(batch.items, batch.mask)
    m = batch.mask
    picked, tgt = states[m], batch.targets[m]
    cand = torch.cat([tgt[:, None], pool[tgt].repeat(1, 3)], dim=1)  # [M, 4]
    hard = (picked[:, None, :] * table[cand]).sum(-1)
    want = base + 0.5 * F.cross_entropy(hard, torch.zeros(len(tgt), dtype=torch.long))
    torch.testing.assert_close(with_neg, want, rtol=1e-5, atol=1e-5)
