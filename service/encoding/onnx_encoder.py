"""The serving encoder: tokenize -> ONNX Runtime session -> mean pool + L2 normalise.

Texts are sorted by length and batched so that a batch pads to similar lengths
(much less wasted compute than batching in arrival order), then put back in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from service.core.manifest import EncoderSpec
from service.core.pooling import l2_normalize, mean_pool
from service.encoding.base import EncoderError
from service.encoding.session import make_session
from service.encoding.tokenize import TextTokenizer


class OnnxEncoder:
    def __init__(
        self,
        model_path: Path,
        tokenizer_dir: Path,
        *,
        max_length: int = 128,
        device: str = "auto",
        threads: int = 0,
        batch_size: int = 32,
        name: str = "",
    ) -> None:
        self.session = make_session(model_path, device=device, threads=threads)
        self.tokenizer = TextTokenizer(tokenizer_dir, max_length=max_length)
        self.max_length = max_length
        self.batch_size = batch_size
        self.name = name or Path(model_path).name
        inputs = {i.name for i in self.session.get_inputs()}
        if not {"input_ids", "attention_mask"} <= inputs:
            raise EncoderError(f"{model_path}: expected inputs input_ids and attention_mask, got {sorted(inputs)}")
        self._needs_token_types = "token_type_ids" in inputs
        out = self.session.get_outputs()[0]
        self._output = out.name
        dim = out.shape[-1]
        self.dim = int(dim) if isinstance(dim, int) else int(self._run(["dimension probe"]).shape[1])
        self.providers = self.session.get_providers()

    @classmethod
    def from_manifest(
        cls, root: Path, spec: EncoderSpec, variant: str = "int8", device: str = "auto", threads: int = 0
    ) -> OnnxEncoder:
        if variant not in ("fp32", "int8"):
            raise EncoderError(f"unknown encoder variant {variant!r} (expected fp32 or int8)")
        rel = spec.onnx_int8 if variant == "int8" else spec.onnx_fp32
        enc = cls(
            root / rel,
            root / spec.tokenizer_dir,
            max_length=spec.max_length,
            device=device,
            threads=threads,
            name=f"{spec.base_model}:{variant}",
        )
        if enc.dim != spec.dim:
            raise EncoderError(f"{rel} gives vectors of dim {enc.dim}, the manifest says {spec.dim}")
        return enc

    def _run(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        batch = self.tokenizer(texts)
        feed = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        if self._needs_token_types:
            feed["token_type_ids"] = np.zeros_like(batch.input_ids)
        hidden = self.session.run([self._output], feed)[0]  # [B, L, H]
        return l2_normalize(mean_pool(hidden, batch.attention_mask))  # [B, H]

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)  # [N, D]
        for start in range(0, len(texts), self.batch_size):
            idx = order[start : start + self.batch_size]
            out[idx] = self._run([texts[i] for i in idx])
        return out
