"""The Monitor draws only what a pixel column shows: the exact min and max of its samples, from min/max levels
that grow with the series, and a smoothed line continued from its cached prefix. Each must equal a full
recompute from the raw points; pyqtgraph gets a few points per column, never the whole series."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from app.models.metrics_model import SeriesBuffer
from app.models.panels import PANELS, CurveData
from app.plots import PlotPanel
from app.smoothing import ema_debiased
from ul_engine.store.decimate import ColumnCache, MinMaxPyramid, following_range, view_points


def brute_columns(x, y, lo, hi, columns, log_x=False):
    """Per pixel column over [lo, hi]: (x of its first sample, min, max) by a plain loop over the samples."""
    edges = np.logspace(np.log10(lo), np.log10(hi), columns + 1) if log_x else np.linspace(lo, hi, columns + 1)
    out = []
    i0, i1 = np.searchsorted(x, lo), np.searchsorted(x, hi, "right")
    bounds = [i0, *np.searchsorted(x, edges[1:-1]), i1]
    for s, e in itertools.pairwise(bounds):
        if e > s:
            part = y[s:e]
            finite = part[np.isfinite(part)]
            out.append((x[s], finite.min() if len(finite) else np.nan, finite.max() if len(finite) else np.nan))
    return out


def series(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.cumsum(rng.standard_normal(n))
    y[rng.integers(0, n, n // 500)] = np.nan
    y[rng.integers(0, n, 3)] = [1e6, -1e6, 5e5]  # spikes a strided picture would miss
    return np.arange(1, n + 1, dtype=np.float64), y


def test_levels_grown_in_chunks_equal_levels_built_at_once() -> None:
    _, y = series(100_003)
    whole, grown = MinMaxPyramid(), MinMaxPyramid()
    whole.extend(y)
    end = 0
    for chunk in (1, 2, 5, 1000, 31_337, 7, 40_000, 27_651):
        end += chunk
        grown.extend(y[:end])
    assert grown.n == whole.n == len(y)
    starts = np.array([0, 5, 17, 1000, 65_535, 99_000])
    ends = np.array([1, 600, 70_001, 1001, 100_003, 100_003])
    for pyr in (whole, grown):
        mins, maxs = pyr.column_extremes(y, starts, ends)
        for k, (s, e) in enumerate(zip(starts, ends, strict=True)):
            assert mins[k] == np.nanmin(y[s:e]) and maxs[k] == np.nanmax(y[s:e])


@pytest.mark.parametrize(("lo", "hi", "columns", "log_x"), [
    (1, 200_000, 700, False), (12_345.5, 123_456.7, 333, False), (1, 200_000, 500, True), (50, 60, 400, False),
])  # fmt: skip
def test_view_points_are_the_exact_min_and_max_of_every_pixel_column(lo, hi, columns, log_x) -> None:
    x, y = series(200_000, seed=3)
    pyr = MinMaxPyramid()
    pyr.extend(y)
    xs, ys = view_points(x, y, pyr, lo, hi, columns, log_x=log_x)
    assert len(xs) <= 2 * columns + 3
    i0, i1 = np.searchsorted(x, lo), np.searchsorted(x, hi, "right")
    if i1 - i0 <= 2 * columns:  # zoomed in to fewer samples than pixels: the samples themselves
        np.testing.assert_array_equal(xs, x[max(0, i0 - 1) : i1 + 1])
        return
    before, after = int(i0 > 0), int(i1 < len(x))  # a sample beyond each edge keeps the line to the border
    assert xs[-1 - after] == x[i1 - 1]  # and the last visible sample ends it
    inner_x, inner_y = xs[before : len(xs) - 1 - after], ys[before : len(ys) - 1 - after]
    expected = brute_columns(x, y, lo, hi, columns, log_x)
    assert len(inner_x) == 2 * len(expected)
    np.testing.assert_array_equal(inner_x[0::2], [e[0] for e in expected])
    np.testing.assert_array_equal(inner_y[0::2], [e[1] for e in expected])
    np.testing.assert_array_equal(inner_y[1::2], [e[2] for e in expected])
    visible = y[i0:i1]
    assert np.nanmax(ys) == np.nanmax(visible) and np.nanmin(ys) == np.nanmin(visible)


def test_a_growing_buffer_keeps_levels_and_smoothing_equal_to_a_full_recompute() -> None:
    x, y = series(60_000, seed=7)
    buf = SeriesBuffer("loss/total")
    for a, b in ((0, 1), (1, 10), (10, 20_000), (20_000, 20_001), (20_001, 60_000)):
        buf.append(x[a:b], y[a:b], x[a:b])
        levels = buf.levels()
        sx, sy = buf.smoothed(0.9)
    fresh = MinMaxPyramid()
    fresh.extend(y)
    starts, ends = np.array([0, 123, 40_000]), np.array([60_000, 59_999, 40_001])
    for got, want in zip(levels.column_extremes(y, starts, ends), fresh.column_extremes(y, starts, ends), strict=True):
        np.testing.assert_array_equal(got, want)
    finite = np.isfinite(y)
    np.testing.assert_array_equal(sx, x[finite])
    np.testing.assert_allclose(sy, ema_debiased(y, 0.9)[finite], rtol=1e-9)
    smooth_levels = MinMaxPyramid()
    smooth_levels.extend(sy)
    got = buf.smooth.levels.column_extremes(sy, np.array([0]), np.array([len(sy)]))
    assert got == smooth_levels.column_extremes(sy, np.array([0]), np.array([len(sy)]))


def test_the_panel_hands_pyqtgraph_one_column_of_points_per_pixel_and_follows_zoom(qtbot) -> None:
    panel = PlotPanel(next(s for s in PANELS if s.id == "total"))
    qtbot.addWidget(panel)
    panel.resize(500, 320)
    panel.show()
    qtbot.waitExposed(panel)
    x, y = series(400_000, seed=11)
    buf = SeriesBuffer("loss/total")
    buf.append(x, y, x)
    panel.ensure_curve("1|loss/total", "run", "#1f77b4", dashed=False, primary=True)
    panel.set_curve_data("1|loss/total", CurveData(x, y, raw_levels=buf.levels(), has_nonfinite=True))
    curve = panel.curves["1|loss/total"]
    columns = panel._columns()
    drawn_x, drawn_y = curve.raw.getData()
    assert len(drawn_x) <= 2 * columns + 3
    assert np.nanmax(drawn_y) == 1e6 and np.nanmin(drawn_y) == -1e6  # no spike hidden

    panel.item.setXRange(1000, 1200, padding=0)  # a zoom: the samples themselves, exactly
    drawn_x, drawn_y = curve.raw.getData()
    np.testing.assert_array_equal(drawn_x, x[998:1201])

    panel.item.enableAutoRange()
    more_x = np.arange(400_001, 400_101, dtype=np.float64)
    buf.append(more_x, np.full(100, 2e6), more_x)  # points arrive: the levels grow, the view follows
    panel.set_curve_data("1|loss/total", CurveData(buf.steps, buf.values, raw_levels=buf.levels(),
                                                   has_nonfinite=True))  # fmt: skip
    drawn_x, drawn_y = curve.raw.getData()
    assert drawn_x[-1] == 400_100 and np.nanmax(drawn_y) == 2e6
    lo, hi = following_range(1, 400_100)  # the grid of a view that follows the data
    assert lo == 1 and hi >= 400_100
    expected = view_points(buf.steps, buf.values, MinMaxPyramid.built(buf.values), lo, hi, panel._columns())
    np.testing.assert_array_equal(drawn_y, expected[1])
    assert curve.raw_cache.reused > 0  # the columns the new points did not touch were not asked again


def test_a_column_cache_fed_appends_equals_a_fresh_decimation() -> None:
    x, y = series(300_000, seed=5)
    pyr, cache = MinMaxPyramid(), ColumnCache()
    lo, hi = following_range(1, 300_000)
    for end in (150_000, 150_001, 151_000, 220_000, 300_000):
        pyr.extend(y[:end])
        got = view_points(x[:end], y[:end], pyr, lo, hi, 600, cache=cache)
        want = view_points(x[:end], y[:end], MinMaxPyramid.built(y[:end]), lo, hi, 600)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    assert 0 < cache.reused < 600  # the filled columns were reused, the touched ones asked again
