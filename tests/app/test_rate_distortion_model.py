"""The Rate–distortion page's Qt-free model: table cells, which points a log axis can draw, the empty-state and
status sentences, and one colour per run in creation order."""

from __future__ import annotations

import math

from app.models import rate_distortion as model
from ul_engine.core.rate_distortion import RDPoint


def _points() -> list[RDPoint]:
    return [
        RDPoint(2, "lf-high", 11, 10, 8.0, psnr=21.5, bits_per_pixel=0.5, ssim=0.81, n=4, decoder_steps=2),
        RDPoint(1, "lf-low", 12, 5, 1.5, psnr=18.0, bits_per_pixel=0.0, ssim=math.nan, n=4),
        RDPoint(1, "lf-low", 13, 10, 1.5),
    ]


def test_cells_tips_and_the_points_a_log_axis_can_draw() -> None:
    high, zero, fresh = _points()
    assert model.table_cells(high) == ("lf-high", "10", "8", "0.5", "21.50", "0.8100", "4 images, 2 steps")
    assert model.table_cells(zero)[5] == ""  # a NaN SSIM shows as nothing, not "nan"
    assert model.table_cells(fresh) == ("lf-low", "10", "1.5", "", "not evaluated", "", "")
    assert "not evaluated yet" in model.point_tip(fresh) and "c_lf = 8" in model.point_tip(high)
    assert [p for _x, _y, p in model.plotted(_points(), log_x=False)] == [high, zero]
    assert [(x, y) for x, y, _p in model.plotted(_points(), log_x=True)] == [(math.log10(0.5), 21.5)]
    assert model.legend_name(high) == "lf-high (c_lf 8)"


def test_what_the_page_says_and_its_colours() -> None:
    points = _points()
    assert "No checkpoints yet" in model.empty_text([])
    one = model.empty_text([points[2]])
    assert "Nothing evaluated yet" in one and "1 checkpoint in" in one
    assert "untick Log x" in model.empty_text(points)
    status = model.status_text(points)
    assert status == "2 of 3 checkpoints evaluated; 1 without a result (Evaluate runs `ul eval` on them)"
    assert model.training_note(["a", "b"]).startswith("a, b are still training") and model.training_note([]) == ""
    assert model.run_colors(points, ["red", "blue"]) == {1: "red", 2: "blue"}  # by run id, not by order listed
    assert model.run_name(points, 2) == "lf-high" and model.run_name(points, 9) == "run 9"
