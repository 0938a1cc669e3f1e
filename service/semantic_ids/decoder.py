"""Generative-model side of decoding: history -> encoder tokens, and a Hugging Face
encoder-decoder (T5) wrapped as the beam search's step function.

The generative model is a ``transformers`` T5 (``T5ForConditionalGeneration``) over the
sid token vocabulary (``service.core.sid`` token layout). The artifact stores it with
``save_pretrained`` (config.json + safetensors): the service loads it with torch and
transformers, both already dependencies, and the batched beam search calls its decoder
step by step with shapes that change every step (``[B * W, t]``), which an ONNX export
would have to re-create with a hand-built cache; keeping the HF model also makes the
benchmark against ``generate`` run on the very same weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from service.core.sid import EOS_TOKEN, HISTORY_INPUTS, PAD_TOKEN
from service.semantic_ids.beam import StepFn

GENREC_DIR = "genrec"


def history_input(model: Any) -> str:
    """How ``model``'s encoder reads a history (its config's ``history_input``; older models: tokens).

    ``tokens`` (TIGER): one encoder position per sid token, ``depth`` per item.
    ``items``: one encoder position per item, the sum of its sid tokens' embeddings
    (a quarter of the positions at depth 4, so several times cheaper to train and serve)."""
    mode = str(getattr(model.config, "history_input", "tokens"))
    if mode not in HISTORY_INPUTS:
        raise ValueError(f"unknown history_input {mode!r} in the model config (expected one of {HISTORY_INPUTS})")
    return mode


def history_tokens(
    item_tokens: npt.NDArray[np.int64],
    histories: Sequence[Sequence[int] | npt.NDArray[np.int64]],
    max_items: int,
    *,
    per_item: bool = False,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Encoder input: the sid tokens of each history's last ``max_items`` items, then EOS,
    right-padded with PAD. item_tokens [N, depth] -> (ids [B, S], mask [B, S]).

    ``per_item``: one row of tokens per position instead (the ``items`` history input):
    ids [B, S, depth] with the items' token rows, then an EOS row ``[EOS, PAD, ...]``,
    then all-PAD rows; mask [B, S]."""
    if any(len(h) == 0 for h in histories):
        raise ValueError("empty history")
    depth = item_tokens.shape[1]
    eos: npt.NDArray[np.int64]
    if per_item:  # one position per item: [L, depth] rows, then the EOS row
        eos = np.full((1, depth), PAD_TOKEN, dtype=np.int64)
        eos[0, 0] = EOS_TOKEN
    else:  # one position per token: [L * depth], then EOS
        eos = np.array([EOS_TOKEN], dtype=np.int64)

    rows = [
        np.concatenate([item_tokens[np.asarray(h[-max_items:], dtype=np.int64)].reshape(-1, *eos.shape[1:]), eos])
        for h in histories
    ]
    s = max(len(r) for r in rows)
    ids = np.full((len(rows), s, *eos.shape[1:]), PAD_TOKEN, dtype=np.int64)
    mask = np.zeros((len(rows), s), dtype=bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = True
    assert s <= max_items * (1 if per_item else depth) + 1
    return ids, mask


def encoder_inputs(model: Any, ids: Tensor) -> dict[str, Tensor]:
    """Keyword arguments for the encoder: ``input_ids`` for token histories [B, S]; for per-item
    histories [B, S, depth] ``inputs_embeds`` [B, S, D] = the sum of each position's non-PAD token
    embeddings (PAD rows give zeros; the attention mask hides them)."""
    if ids.dim() == 2:
        return {"input_ids": ids}
    if ids.dim() != 3:
        raise ValueError(f"history ids must be [B, S] or [B, S, depth], got {tuple(ids.shape)}")
    id_table = getattr(model, "item_id_embedding", None)
    if id_table is not None:  # the last column is the item-ID column (row + 1; 0 = no ID)
        ids, id_rows = ids[..., :-1], ids[..., -1]
    emb = model.get_input_embeddings()(ids)  # [B, S, depth, D]
    keep = (ids != PAD_TOKEN).unsqueeze(-1).to(emb.dtype)  # [B, S, depth, 1]
    x = (emb * keep).sum(2)  # [B, S, D]
    if id_table is not None:
        x = x + id_table(id_rows)  # row 0 is zeros: positions without an ID add nothing
    return {"inputs_embeds": x}


def item_id_embeddings(model: Any) -> int:
    """Items with a learned ID vector in ``model`` (its config's ``item_id_embeddings``; 0 = none)."""
    return int(getattr(model.config, "item_id_embeddings", 0) or 0)


def with_item_ids(item_tokens: npt.NDArray[np.int64], id_rows: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Encoder rows of items for a model with item-ID embeddings: ``item_tokens`` [N, depth] plus
    the ID column ``id_rows + 1`` [N] (``id_rows``: the item's row in the training table, -1 for
    items without one, which get 0 = no ID). -> [N, depth + 1]"""
    ids = np.asarray(id_rows, dtype=np.int64)
    if ids.shape != (len(item_tokens),):
        raise ValueError(f"{ids.shape} id rows for {len(item_tokens)} items")
    return np.concatenate([item_tokens, np.maximum(ids, -1)[:, None] + 1], axis=1)


def model_history_tokens(
    model: Any,
    item_tokens: npt.NDArray[np.int64],
    histories: Sequence[Sequence[int] | npt.NDArray[np.int64]],
    max_items: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """:func:`history_tokens` in the layout ``model``'s encoder reads (:func:`history_input`).
    ``item_tokens``: the items' encoder rows, [N, depth] sid tokens, with the ID column
    (:func:`with_item_ids`) for a model with item IDs."""
    depth = getattr(model.config, "sid_depth", None)  # models saved before it was recorded: not checked
    if depth is not None:
        width = int(depth) + (1 if item_id_embeddings(model) else 0)
        if item_tokens.shape[1] != width:
            raise ValueError(
                f"item rows have {item_tokens.shape[1]} columns; the model reads {width} "
                "(sid tokens" + (" + item-ID column, see with_item_ids)" if width > int(depth) else ")")
            )
    return history_tokens(item_tokens, histories, max_items, per_item=history_input(model) == "items")


class Seq2SeqStep:
    """A T5-style model's next-token logits for every beam of a batch, as a beam-search step.

    The encoder runs once per batch; each step re-runs the (shallow) decoder over the
    beams' prefixes (at most ``depth`` tokens) against the encoder states repeated per beam.
    """

    def __init__(self, model: Any, input_ids: Tensor, attention_mask: Tensor) -> None:
        self.model = model
        self.start = int(model.config.decoder_start_token_id or PAD_TOKEN)
        with torch.no_grad():
            self.enc = model.get_encoder()(
                **encoder_inputs(model, input_ids), attention_mask=attention_mask
            ).last_hidden_state  # [B, S, D]
        self.mask = attention_mask  # [B, S]
        self._rep: tuple[int, Tensor, Tensor] | None = None

    def _repeated(self, w: int) -> tuple[Tensor, Tensor]:
        if self._rep is None or self._rep[0] != w:
            self._rep = (w, self.enc.repeat_interleave(w, dim=0), self.mask.repeat_interleave(w, dim=0))
        return self._rep[1], self._rep[2]  # [B*W, S, D], [B*W, S]

    @torch.no_grad()
    def __call__(self, prefix: Tensor) -> Tensor:
        b, w, t = prefix.shape
        enc, mask = self._repeated(w)
        start = torch.full((b * w, 1), self.start, dtype=torch.long, device=prefix.device)
        dec_in = torch.cat([start, prefix.reshape(b * w, t)], dim=1)  # [B*W, t + 1]
        out = self.model(
            encoder_outputs=(enc,), attention_mask=mask, decoder_input_ids=dec_in, use_cache=False, return_dict=True
        )
        return out.logits[:, -1, :].view(b, w, -1)  # [B, W, V]


class T5BeamStep:
    """The same logits as :class:`Seq2SeqStep`, computed beam-aware from the T5 modules.

    Every beam of a request attends to the same encoder states, so the cross-attention
    keys/values are projected once per request (``[B, H, S, d_kv]``, not once per beam
    and step as a per-beam cache holds them), and the beams' queries are folded into the
    query axis (``[B, H, W * T, d_kv]``). Self-attention keys/values are cached per beam
    and gathered when the beam search reports its re-selection (:meth:`reorder`), so each
    step runs the newest token only; called without ``reorder`` (the reference search),
    every call recomputes the whole prefix. The vocabulary projection runs on the last
    position only. Eval-mode arithmetic (no dropout); tested against the
    Hugging Face forward in tests/unit/service/semantic_ids/test_decoder.py.
    """

    def __init__(self, model: Any, input_ids: Tensor, attention_mask: Tensor) -> None:
        cfg = model.config
        if getattr(cfg, "is_gated_act", False):
            raise ValueError("T5BeamStep supports the relu/gelu (non-gated) feed-forward only")
        self.model = model
        self.dec = model.get_decoder()
        self.start = int(cfg.decoder_start_token_id or PAD_TOKEN)
        self.h = int(cfg.num_heads)
        self.dk = int(cfg.d_kv)
        self.scale_out = float(cfg.d_model) ** -0.5 if getattr(cfg, "scale_decoder_outputs", True) else 1.0
        with torch.no_grad():
            enc = model.get_encoder()(
                **encoder_inputs(model, input_ids), attention_mask=attention_mask
            ).last_hidden_state  # [B, S, D]
            b, s, _ = enc.shape
            self.cross_kv = []
            for block in self.dec.block:
                att = block.layer[1].EncDecAttention
                k = att.k(enc).view(b, s, self.h, self.dk).transpose(1, 2)  # [B, H, S, dk]
                v = att.v(enc).view(b, s, self.h, self.dk).transpose(1, 2)  # [B, H, S, dk]
                self.cross_kv.append((k, v))
        neg = torch.finfo(enc.dtype).min
        self.cross_mask = torch.where(attention_mask.bool(), 0.0, neg).to(enc.dtype)[:, None, None, :]  # [B, 1, 1, S]
        self._self_bias: dict[int, Tensor] = {}
        self._cache: list[tuple[Tensor, Tensor]] | None = None  # per block: self-attn K, V [B, W, H, T, dk]
        self._expect: tuple[int, int, int] | None = None

    def _bias(self, t: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """Relative position bias + causal mask of the decoder self-attention: [1, H, T, T]."""
        if t not in self._self_bias:
            att = self.dec.block[0].layer[0].SelfAttention
            bias = att.compute_bias(t, t, device=device)  # [1, H, T, T]
            causal = torch.triu(torch.ones(t, t, dtype=torch.bool, device=device), diagonal=1)
            self._self_bias[t] = bias.to(dtype) + torch.where(causal, torch.finfo(dtype).min, 0.0).to(dtype)
        return self._self_bias[t]

    def reorder(self, src: Tensor) -> None:
        """Beams were re-selected: new beam j extends old beam ``src[:, j]`` [B, W']. Gathers the
        self-attention cache so the next call only runs the newest token."""
        if self._cache is None:
            return
        b, w = src.shape
        idx = src[:, :, None, None, None]
        self._cache = [
            (k.gather(1, idx.expand(b, w, *k.shape[2:])), v.gather(1, idx.expand(b, w, *v.shape[2:])))
            for k, v in self._cache
        ]
        self._expect = (b, w, self._cache[0][0].shape[3])

    @torch.no_grad()
    def __call__(self, prefix: Tensor) -> Tensor:
        b, w, t = prefix.shape
        tt = t + 1
        start = torch.full((b, w, 1), self.start, dtype=torch.long, device=prefix.device)
        tokens = torch.cat([start, prefix], dim=2)  # [B, W, T]
        # Incremental when the beam search reordered our cache for exactly this prefix length.
        p0 = t if self._expect == (b, w, t) and self._cache is not None else 0
        self._expect = None
        n = tt - p0  # new positions
        x = self.dec.embed_tokens(tokens[:, :, p0:])  # [B, W, n, D]
        bias = self._bias(tt, x.device, x.dtype)[:, :, p0:, :]  # [1, H, n, T]
        new_cache: list[tuple[Tensor, Tensor]] = []
        for i, (block, (ck, cv)) in enumerate(zip(self.dec.block, self.cross_kv, strict=True)):
            sa = block.layer[0].SelfAttention
            y = block.layer[0].layer_norm(x)  # [B, W, n, D]
            q = sa.q(y).view(b, w, n, self.h, self.dk).transpose(2, 3)  # [B, W, H, n, dk]
            k = sa.k(y).view(b, w, n, self.h, self.dk).transpose(2, 3)
            v = sa.v(y).view(b, w, n, self.h, self.dk).transpose(2, 3)
            if p0 > 0:
                assert self._cache is not None
                k = torch.cat([self._cache[i][0], k], dim=3)  # [B, W, H, T, dk]
                v = torch.cat([self._cache[i][1], v], dim=3)
            new_cache.append((k, v))
            att = torch.softmax(q @ k.transpose(-1, -2) + bias, dim=-1)  # [B, W, H, n, T]
            o = (att @ v).transpose(2, 3).reshape(b, w, n, self.h * self.dk)  # [B, W, n, H*dk]
            x = x + sa.o(o)
            ca = block.layer[1].EncDecAttention
            y = block.layer[1].layer_norm(x).reshape(b, w * n, -1)  # [B, W*n, D]
            q = ca.q(y).view(b, w * n, self.h, self.dk).transpose(1, 2)  # [B, H, W*n, dk]
            att = torch.softmax(q @ ck.transpose(-1, -2) + self.cross_mask, dim=-1)  # [B, H, W*n, S]
            o = (att @ cv).transpose(1, 2).reshape(b, w, n, self.h * self.dk)  # [B, W, n, H*dk]
            x = x + ca.o(o)
            ff = block.layer[2]
            x = x + ff.DenseReluDense(ff.layer_norm(x))
        self._cache = new_cache
        last = self.dec.final_layer_norm(x[:, :, -1, :]) * self.scale_out  # [B, W, D]
        logits: Tensor = self.model.lm_head(last)  # [B, W, V]
        return logits


def step_for(
    model: Any, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.bool_], device: torch.device, *, fast: bool = True
) -> StepFn:
    """The beam-search step of ``model`` for encoder inputs ``ids`` ([B, S] or [B, S, depth]) / ``mask`` [B, S]."""
    cls = T5BeamStep if fast else Seq2SeqStep
    return cls(model, torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device).long())


def load_genrec(path: Path, device: torch.device | str = "cpu") -> Any:
    """The saved T5 model (``save_pretrained`` folder) in eval mode on ``device``."""
    from service.semantic_ids.model import GenRecT5

    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no generative model at {path} (config.json missing)")
    model: Any = GenRecT5.from_pretrained(str(path))
    return model.to(device).eval()
