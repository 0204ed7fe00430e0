"""The plots' smoothing is TensorBoard's EMA with debias, on the raw values, and can be continued."""

from __future__ import annotations

import numpy as np
import pytest

from app.smoothing import EmaCache, ema_debiased


def reference(values: list[float], w: float) -> list[float]:
    out, last, n = [], 0.0, 0
    for y in values:
        if not np.isfinite(y):
            out.append(float("nan"))
            continue
        last = last * w + (1 - w) * y
        n += 1
        out.append(last / (1 - w**n))
    return out


@pytest.mark.parametrize("w", [0.0, 0.3, 0.9, 0.99])
def test_matches_the_reference_loop(w: float) -> None:
    values = list(np.random.default_rng(0).normal(5, 2, 500))
    expected = values if w == 0 else reference(values, w)
    np.testing.assert_allclose(ema_debiased(np.array(values), w), expected, rtol=1e-10)


def test_debias_keeps_the_first_point_and_a_constant_series_flat() -> None:
    assert ema_debiased(np.array([7.0, 7.0, 7.0]), 0.9) == pytest.approx([7.0, 7.0, 7.0])
    assert ema_debiased(np.array([3.0, 5.0]), 0.99)[0] == pytest.approx(3.0)


def test_non_finite_values_are_skipped_not_propagated() -> None:
    values = np.array([1.0, np.nan, 3.0, np.inf, 5.0])
    out = ema_debiased(values, 0.5)
    np.testing.assert_allclose(out, reference(list(values), 0.5))
    assert np.isfinite(out[[0, 2, 4]]).all()


def test_appending_continues_from_the_filter_state() -> None:
    rng = np.random.default_rng(1)
    steps = np.arange(1, 10_001, dtype=np.float64)
    values = rng.normal(size=10_000)
    values[[10, 5000]] = np.nan
    cache = EmaCache()
    for end in (1, 2, 700, 5001, 9999, 10_000):
        x, y = cache.update(steps[:end], values[:end], 0.95)
    mask = np.isfinite(values)
    np.testing.assert_array_equal(x, steps[mask])
    np.testing.assert_allclose(y, ema_debiased(values, 0.95)[mask], rtol=1e-9)


def test_a_new_weight_recomputes() -> None:
    steps, values = np.arange(5.0), np.array([1.0, 2, 3, 4, 5])
    cache = EmaCache()
    cache.update(steps, values, 0.5, has_nonfinite=False)
    _, y = cache.update(steps, values, 0.9, has_nonfinite=False)
    np.testing.assert_allclose(y, reference(list(values), 0.9))
