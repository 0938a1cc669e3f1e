from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.encoding.base import EncoderError
from service.encoding.tokenize import TextTokenizer

CLS, SEP, PAD = 101, 102, 0


def test_pads_to_longest_in_batch_not_to_fixed_length(tokenizer_dir: Path) -> None:
    tok = TextTokenizer(tokenizer_dir, max_length=128)
    batch = tok(["yoga mat", "a", "stainless steel chef knife"])
    assert batch.input_ids.dtype == np.int64 and batch.attention_mask.dtype == np.int64
    width = batch.input_ids.shape[1]
    assert width < 128  # the file's fixed padding (128) is overridden
    lengths = batch.attention_mask.sum(axis=1)
    assert lengths.max() == width
    assert lengths.tolist() == [4, 3, width]  # [CLS] yoga mat [SEP] / [CLS] a [SEP]
    for row, n in enumerate(lengths):
        assert batch.input_ids[row, 0] == CLS and batch.input_ids[row, n - 1] == SEP
        assert (batch.input_ids[row, n:] == PAD).all() and (batch.attention_mask[row, n:] == 0).all()
    assert batch.token_type_ids is None


def test_truncates_to_max_length_keeping_sep(tokenizer_dir: Path) -> None:
    tok = TextTokenizer(tokenizer_dir, max_length=16)
    ids = tok.encode(["word " * 100, "short"])
    assert len(ids[0]) == 16 and ids[0][0] == CLS and ids[0][-1] == SEP
    assert len(ids[1]) == 3
    batch = tok.pad(ids)
    assert batch.input_ids.shape == (2, 16)


def test_token_type_ids_when_the_model_takes_them(tokenizer_dir: Path) -> None:
    batch = TextTokenizer(tokenizer_dir, 32, with_token_type_ids=True)(["a b c", "d"])
    assert batch.token_type_ids is not None
    assert batch.token_type_ids.shape == batch.input_ids.shape and not batch.token_type_ids.any()


def test_empty_batch_and_errors(tokenizer_dir: Path, tmp_path: Path) -> None:
    tok = TextTokenizer(tokenizer_dir, 32)
    assert tok([]).input_ids.shape == (0, 0)
    with pytest.raises(EncoderError, match="not str"):
        tok.encode(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(EncoderError, match="not found"):
        TextTokenizer(tmp_path, 32)
    with pytest.raises(EncoderError, match="max_length"):
        TextTokenizer(tokenizer_dir, 1)
