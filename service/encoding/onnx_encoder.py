"""The production encoder: tokenize -> onnxruntime session -> mean pool + L2 (numpy core).

Texts of a call are tokenized once, sorted by token count and run in batches of
similar length, so a batch is padded only to its own longest text; rows are put
back in input order. ``InferenceSession.run`` is thread-safe, so one encoder can
serve the dynamic batcher's worker thread and the reindex job at once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from service.core.manifest import EncoderSpec
from service.core.pooling import l2_normalize, mean_pool
from service.encoding.base import EncoderError
from service.encoding.session import CUDA, make_session
from service.encoding.tokenize import TextTokenizer, TokenBatch

logger = logging.getLogger(__name__)

VARIANTS = ("fp32", "int8")
OUTPUT_NAME = "last_hidden_state"


class OnnxEncoder:
    """:class:`service.encoding.base.Encoder` on an exported ONNX model (output ``last_hidden_state``)."""

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
        if batch_size < 1:
            raise EncoderError(f"batch_size must be >= 1, got {batch_size}")
        self.session = make_session(Path(model_path), device=device, threads=threads)
        inputs = {i.name for i in self.session.get_inputs()}
        missing = {"input_ids", "attention_mask"} - inputs
        if missing:
            raise EncoderError(f"{model_path}: model inputs {sorted(inputs)} lack {sorted(missing)}")
        outputs = [o.name for o in self.session.get_outputs()]
        if OUTPUT_NAME not in outputs:
            raise EncoderError(f"{model_path}: model outputs {outputs} lack {OUTPUT_NAME!r}")
        self._takes_types = "token_type_ids" in inputs
        self.tokenizer = TextTokenizer(Path(tokenizer_dir), max_length, with_token_type_ids=self._takes_types)
        self.max_length = max_length
        self.batch_size = batch_size
        self.name = name or Path(model_path).stem
        self.device = "cuda" if CUDA in self.session.get_providers() else "cpu"
        self.dim = self._hidden_size()

    def _hidden_size(self) -> int:
        shape = next(o.shape for o in self.session.get_outputs() if o.name == OUTPUT_NAME)  # [B, L, H]
        if len(shape) == 3 and isinstance(shape[2], int):
            return shape[2]
        # Symbolic hidden size: run one tiny input to learn it.
        return int(self._run(self.tokenizer(["a"])).shape[-1])

    @classmethod
    def from_manifest(
        cls,
        root: Path,
        spec: EncoderSpec,
        variant: str = "int8",
        device: str = "auto",
        threads: int = 0,
        *,
        batch_size: int = 32,
    ) -> OnnxEncoder:
        """The ``variant`` ("fp32" | "int8") encoder of the artifact set at ``root``."""
        if variant not in VARIANTS:
            raise EncoderError(f"encoder variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        if spec.pooling != "mean" or not spec.normalize:
            raise EncoderError(f"unsupported pooling {spec.pooling!r} (normalize={spec.normalize}); expected mean + L2")
        rel = spec.onnx_fp32 if variant == "fp32" else spec.onnx_int8
        encoder = cls(
            Path(root) / rel,
            Path(root) / spec.tokenizer_dir,
            max_length=spec.max_length,
            device=device,
            threads=threads,
            batch_size=batch_size,
            name=f"{spec.base_model}:onnx-{variant}",
        )
        if encoder.dim != spec.dim:
            raise EncoderError(f"{rel} gives {encoder.dim}-d vectors, the manifest says {spec.dim}")
        if variant == "int8" and encoder.device == "cuda":
            logger.warning("the int8 encoder is a CPU variant (dynamic quantization); prefer fp32 on CUDA")
        return encoder

    def _run(self, batch: TokenBatch) -> np.ndarray:
        """One padded batch -> last hidden states [B, L, H]."""
        feed = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        if self._takes_types and batch.token_type_ids is not None:
            feed["token_type_ids"] = batch.token_type_ids
        try:
            (hidden,) = self.session.run([OUTPUT_NAME], feed)  # [B, L, H]
        except Exception as exc:  # onnxruntime's own error types
            raise EncoderError(f"onnxruntime failed on a batch of shape {batch.input_ids.shape}: {exc}") from exc
        return np.asarray(hidden)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """[N] texts -> [N, dim] float32 unit rows, in input order."""
        n = len(texts)
        out = np.zeros((n, self.dim), dtype=np.float32)  # [N, H]
        if n == 0:
            return out
        ids = self.tokenizer.encode(texts)
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=n)
        order = np.argsort(-lengths, kind="stable")  # longest first
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = self.tokenizer.pad([ids[i] for i in idx])  # [b, L_b]
            hidden = self._run(batch)  # [b, L_b, H]
            out[idx] = l2_normalize(mean_pool(hidden, batch.attention_mask))  # [b, H]
        return out
