from __future__ import annotations

import numpy as np

from service.core.pooling import l2_normalize, mean_pool


def test_mean_pool_ignores_padding() -> None:
    hidden = np.array([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]], dtype=np.float32)  # [1, 3, 2]
    mask = np.array([[1, 1, 0]])
    np.testing.assert_allclose(mean_pool(hidden, mask), [[2.0, 3.0]])


def test_mean_pool_all_masked_row_is_finite() -> None:
    out = mean_pool(np.ones((1, 2, 3), dtype=np.float32), np.zeros((1, 2), dtype=np.int64))
    assert np.isfinite(out).all()


def test_l2_normalize_unit_rows_and_zero_safe() -> None:
    x = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32)
    y = l2_normalize(x)
    np.testing.assert_allclose(y[0], [0.6, 0.8], rtol=1e-6)
    assert np.all(y[1] == 0.0)
