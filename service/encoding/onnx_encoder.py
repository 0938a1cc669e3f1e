"""The production encoder: tokenize -> onnxruntime session -> mean pool + L2 (numpy core).

Texts of a call are tokenized once, sorted by token count and run in batches of
similar length, so a batch is padded only to its own longest text; rows are put
back in input order. ``InferenceSession.run`` is thread-safe, so one encoder can
serve the dynamic batcher's worker thread and the reindex job at once.

Besides the one-call :meth:`OnnxEncoder.encode` (the plain serial reference path)
the encoder exposes its three stages for the pipelined batcher
(``service/encoding/pipeline.py``): :meth:`tokenize` + :meth:`length_buckets` +
:meth:`pad`, :meth:`run`, :meth:`pool`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from service.core.manifest import EncoderSpec
from service.core.pooling import l2_normalize, mean_pool
from service.encoding.base import EncoderError
from service.encoding.session import CUDA, SessionTuning, make_session
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
        tuning: SessionTuning | None = None,
        max_batch_tokens: int = 4096,
    ) -> None:
        if batch_size < 1:
            raise EncoderError(f"batch_size must be >= 1, got {batch_size}")
        if max_batch_tokens < max_length:
            raise EncoderError(f"max_batch_tokens ({max_batch_tokens}) must be >= max_length ({max_length})")
        self.max_batch_tokens = max_batch_tokens
        self.session = make_session(Path(model_path), device=device, threads=threads, tuning=tuning)
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
        tuning: SessionTuning | None = None,
        max_batch_tokens: int = 4096,
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
            tuning=tuning,
            max_batch_tokens=max(max_batch_tokens, spec.max_length),
        )
        if encoder.dim != spec.dim:
            raise EncoderError(f"{rel} gives {encoder.dim}-d vectors, the manifest says {spec.dim}")
        if variant == "int8" and encoder.device == "cuda":
            logger.warning("the int8 encoder is a CPU variant (dynamic quantization); prefer fp32 on CUDA")
        return encoder

    # ------------------------------------------------------------- stages (pipelined batcher)
    def tokenize(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Stage 1a: truncated token ids per text, unpadded. -> N x [L_i] int64"""
        return self.tokenizer.encode(texts)

    def length_buckets(self, ids: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Stage 1b: row indices grouped into runs of similar token count, longest first.

        A bucket holds at most ``batch_size`` texts and ``max_batch_tokens`` padded tokens
        (rows x its longest text), and a new one starts when the next text is less than
        half as long as the bucket's longest, so short texts are never padded to a long one.
        """
        return length_buckets([len(x) for x in ids], self.batch_size, self.max_batch_tokens)

    def pad(self, ids: Sequence[np.ndarray]) -> TokenBatch:
        """Stage 1c: one padded batch. -> TokenBatch of [B, max L_i]"""
        return self.tokenizer.pad(ids)

    def run(self, batch: TokenBatch) -> np.ndarray:
        """Stage 2: one padded batch -> last hidden states [B, L, H]."""
        return self._run(batch)

    @staticmethod
    def pool(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Stage 3: [B, L, H] hidden states + [B, L] mask -> [B, H] unit rows."""
        return l2_normalize(mean_pool(hidden, attention_mask))

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


def length_buckets(lengths: Sequence[int], max_rows: int, max_tokens: int) -> list[np.ndarray]:
    """Row indices grouped by token count (see :meth:`OnnxEncoder.length_buckets`). -> [n_b] int64 arrays"""
    n = len(lengths)
    if n == 0:
        return []
    arr = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-arr, kind="stable")  # longest first
    buckets: list[np.ndarray] = []
    start, width = 0, int(arr[order[0]])
    for pos in range(1, n + 1):
        if pos < n:
            length = int(arr[order[pos]])
            rows = pos - start + 1
            if rows <= max_rows and rows * width <= max_tokens and 2 * length >= width:
                continue
        buckets.append(order[start:pos])
        if pos < n:
            start, width = pos, int(arr[order[pos]])
    return buckets
