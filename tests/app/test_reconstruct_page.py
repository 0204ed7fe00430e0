"""The Reconstruct page with a real session worker and a `smoke` model: drops of good and bad files, the
compare views (PNG artifacts under test-artifacts/app/), the cache without a worker call, a folder of
thousands of files with progress and cancel, paste and export."""

from __future__ import annotations

import csv
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QImage
from PySide6.QtWidgets import QApplication
from ul_app_testkit import save_artifact

from app.models.jobs import CANCELLED, CHECKING, DONE, ERROR, RUNNING
from app.widgets.checkpoint_picker import DEMO_RUN_NAME, ModelChoice, preferred
from app.widgets.image_views import array_from_qimage
from ul_engine.cli.main import main as ul_main

STEPS = 2


@pytest.fixture(scope="module")
def trained_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A smoke stage-1 run with checkpoints at steps 10 and 20 (about 10 s)."""
    home = tmp_path_factory.mktemp("ul-home")
    assert ul_main(["--home", str(home), "train", "--preset", "smoke", "--name", "s1", "--steps", "20",
                    "--set", "train.checkpoint_every=10", "--json"]) == 0  # fmt: skip
    return home


@pytest.fixture(scope="module")
def live_ctx(qapp, trained_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """One AppContext with a real session worker for the module (the worker keeps the model loaded)."""
    from PySide6.QtCore import QSettings

    from app.context import AppContext
    from app.settings import Settings

    ini = tmp_path_factory.mktemp("settings") / "s.ini"
    ctx = AppContext(trained_home, Settings(QSettings(str(ini), QSettings.Format.IniFormat)), start_session=True)
    ctx.start()
    yield ctx
    ctx.shutdown()


def make_page(qtbot, ctx, *, samples: int = 1):
    from app.pages.reconstruct import ReconstructPage

    page = ReconstructPage(ctx)
    qtbot.addWidget(page)
    page.resize(1280, 760)
    page.show()
    qtbot.waitExposed(page)
    page.steps.setValue(STEPS)
    page.samples.setValue(samples)
    page.seed.setValue(0)
    return page


def drop(qtbot, widget, paths: list[Path]) -> None:
    """A synthesized drag-enter + drop of file URLs (platform-notes §2.5)."""
    md = QMimeData()
    md.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    pos = QPointF(widget.rect().center())
    enter = QDragEnterEvent(pos.toPoint(), Qt.DropAction.CopyAction, md, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)  # fmt: skip
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted()
    event = QDropEvent(pos, Qt.DropAction.CopyAction, md, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(widget.filesDropped, timeout=120_000) as blocker:
        QApplication.sendEvent(widget, event)
    assert blocker.args == [[str(p) for p in paths]]


def wait_idle(qtbot, page, timeout: int = 120_000) -> None:
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=timeout)


def noise_png(path: Path, h: int, w: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), np.full_like(xx, 128)], -1)
    noise = np.random.default_rng(seed).integers(-40, 40, (h, w, 3))
    Image.fromarray(np.clip(smooth + noise, 0, 255).astype(np.uint8)).save(path)
    return path


def cell(page, item, column: int) -> str:
    row = page.table_model.items.index(item)
    return str(page.table_model.index(row, column).data())


def test_dropping_image_files_gives_reconstructions_and_metric_rows(qtbot, live_ctx, tmp_path: Path) -> None:
    page = make_page(qtbot, live_ctx)
    assert page.picker.current()["step"] == 20  # the latest checkpoint of the only run is preselected
    files = [noise_png(tmp_path / "a.png", 16, 16, 1), noise_png(tmp_path / "b.png", 24, 20, 2),
             noise_png(tmp_path / "c.png", 32, 32, 3)]  # fmt: skip
    drop(qtbot, page.drop_zone, files)
    wait_idle(qtbot, page)
    items = page.table_model.items
    assert [i.state for i in items] == [DONE] * 3 and page.worker_calls == 3
    for item, (h, w) in zip(items, [(16, 16), (24, 20), (32, 32)], strict=True):
        assert Image.open(item.entry["files"]["reconstruction"]).size == (w, h)
        for column in range(2, 7):  # PSNR, SSIM, bits/px, bits/dim, decode s
            assert cell(page, item, column) != "–", (item.path, column)
    assert page.overall.value() == page.overall.maximum() == 3
    assert page._shown is items[0] and "PSNR" in page.metrics_panel.text()
    save_artifact(page, "reconstruct-page")


def _png_claiming(path: Path, width: int, height: int) -> Path:
    Image.new("RGB", (4, 4), (9, 9, 9)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def _truncated(path: Path, fmt: str) -> Path:
    rgb = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(path, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def bad_and_odd_files(folder: Path) -> tuple[dict[str, tuple[Path, str]], dict[str, tuple[Path, str]]]:
    """(files that must fail: name → (path, message), files that must convert: name → (path, notice))."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.png").write_text("this is a shopping list, not a picture\n")
    failing = {
        "zero bytes": (folder / "empty.png", "file is empty"),
        "truncated png": (_truncated(folder / "cut.png", "PNG"), "truncated"),
        "truncated jpeg": (_truncated(folder / "cut.jpg", "JPEG"), "truncated"),
        "text": (folder / "notes.png", "not an image"),
        "40000² header": (_png_claiming(folder / "bomb.png", 40000, 40000), "decompression bomb"),
        "missing": (folder / "gone" / "nowhere.png", "file not found"),
    }
    ramp16 = (np.linspace(0, 65535, 24 * 20).reshape(20, 24)).astype(np.uint16)
    cv2.imwrite(str(folder / "rgb16.png"), np.stack([ramp16, ramp16[::-1], ramp16], -1))
    Image.new("L", (18, 14), 90).save(folder / "gray.png")
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, np.arange(16, dtype=np.uint8)[None, :] * 16
    Image.fromarray(rgba, "RGBA").save(folder / "alpha.png")
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(folder / "cmyk.jpg")
    Image.fromarray(np.linspace(0, 1, 16 * 16, dtype=np.float32).reshape(16, 16), "F").save(folder / "float.tif")
    frgb = np.zeros((12, 12, 3), np.float32)
    frgb[..., 2] = 1.0  # red, in OpenCV's BGR order
    cv2.imwrite(str(folder / "float-rgb.tif"), frgb)
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:], duration=40, loop=0)
    converting = {
        "16-bit": (folder / "rgb16.png", "16-bit samples"),
        "grayscale": (folder / "gray.png", ""),
        "rgba": (folder / "alpha.png", "transparency composited onto white"),
        "cmyk": (folder / "cmyk.jpg", "CMYK converted"),
        "float tiff": (folder / "float.tif", "float samples"),
        "float rgb tiff": (folder / "float-rgb.tif", ""),
        "animated gif": (folder / "anim.gif", "animated: first of 3 frames used"),
        "1×1": (noise_png(folder / "one.png", 1, 1), "padded from 1×1"),
        "3×500": (noise_png(folder / "thin.png", 500, 3), "padded from 3×500"),
    }
    return failing, converting


def test_bad_files_show_messages_in_place_and_the_good_ones_still_reconstruct(qtbot, live_ctx, tmp_path) -> None:
    page = make_page(qtbot, live_ctx)
    failing, converting = bad_and_odd_files(tmp_path / "mixed")
    good = noise_png(tmp_path / "mixed" / "photo.png", 20, 20, 7)
    order = [good] + [p for p, _ in failing.values()] + [p for p, _ in converting.values()]
    drop(qtbot, page.drop_zone, order)
    wait_idle(qtbot, page)
    by_path = {Path(i.path): i for i in page.table_model.items}
    assert len(by_path) == len(order)
    assert by_path[good].state == DONE
    for name, (path, message) in failing.items():
        item = by_path[path]
        assert item.state == ERROR, name
        shown = cell(page, item, 1)
        assert message in shown and "\n" not in shown, (name, shown)
        page.select(item)
        assert message in page.metrics_panel.text()
    for name, (path, notice) in converting.items():
        item = by_path[path]
        assert item.state == DONE, (name, item.error)
        assert all(n for n in item.notices)
        if notice:
            assert any(notice in n for n in item.notices), (name, item.notices)
    rgb = np.asarray(Image.open(by_path[converting["float rgb tiff"][0]].entry["files"]["input"]))
    assert rgb[0, 0].tolist() == [255, 0, 0]  # OpenCV wrote BGR: its channel 2 is red
    page.select(by_path[converting["rgba"][0]])
    assert "transparency composited" in page.metrics_panel.text()
    page.table.resizeColumnToContents(1)
    save_artifact(page, "reconstruct-bad-files")


def test_compare_views_render_split_heatmap_and_std_map(qtbot, live_ctx, tmp_path: Path) -> None:
    page = make_page(qtbot, live_ctx, samples=3)
    page.compare_picker.select(page.picker.current()["run_id"])
    page.compare_picker.step_box.setCurrentIndex(1)  # step 10
    assert page.compare_picker.current()["step"] == 10
    drop(qtbot, page.drop_zone, [noise_png(tmp_path / "view.png", 48, 64, 11)])
    wait_idle(qtbot, page)
    [item] = page.table_model.items
    assert item.state == DONE and item.compare["ok"] and item.compare["checkpoint_step"] == 10
    assert not page.table.isColumnHidden(7)  # the B columns appear in compare mode
    page.select(item)

    page.tabs.setCurrentWidget(page.side)
    left, right = page.side.views
    left.zoom_by(3.0)
    assert right.zoom() == pytest.approx(left.zoom()) and not right.fitted
    left.centerOn(10, 10)
    qtbot.wait(20)
    assert abs(right.center().x() - left.center().x()) < 1.5
    save_artifact(page.tabs, "reconstruct-side-by-side")
    left.fit()

    page.tabs.setCurrentWidget(page.split)
    qtbot.wait(20)
    rect = page.split.image_rect()
    y = int(rect.center().y())
    qtbot.mousePress(page.split, Qt.MouseButton.LeftButton, pos=QPoint(int(rect.left() + 0.25 * rect.width()), y))
    qtbot.mouseMove(page.split, QPoint(int(rect.left() + 0.3 * rect.width()), y))
    qtbot.mouseRelease(page.split, Qt.MouseButton.LeftButton, pos=QPoint(int(rect.left() + 0.3 * rect.width()), y))
    assert page.split.split == pytest.approx(0.3, abs=0.02)
    _assert_rendered(save_artifact(page.split, "reconstruct-ab-split"))

    page.tabs.setCurrentWidget(page.heatmap)
    qtbot.wait(20)
    assert page.heatmap.values is not None and page.heatmap.values.shape == (48, 64) and page.heatmap.vmax >= 1
    _assert_rendered(save_artifact(page.heatmap, "reconstruct-heatmap"))

    page.pair.setCurrentIndex(page.pair.findData("a-b"))
    assert "B:" in page.side.titles[1].text()
    a_b = page.heatmap.values.copy()
    page.pair.setCurrentIndex(page.pair.findData("input-a"))
    assert not np.array_equal(a_b, page.heatmap.values)

    page.tabs.setCurrentWidget(page.samples_stack)
    qtbot.wait(20)
    assert page.samples_stack.currentIndex() == 1
    std = page.std_map.values
    assert std is not None and std.shape == (48, 64) and std.max() > 0
    _assert_rendered(save_artifact(page.samples_stack, "reconstruct-std-map"))
    save_artifact(page, "reconstruct-compare")


def _assert_rendered(path: Path) -> None:
    arr = np.asarray(Image.open(path).convert("RGB"))
    assert arr.shape[0] > 100 and len(np.unique(arr.reshape(-1, 3), axis=0)) > 50, path


def test_cached_results_reappear_without_a_worker_call(qtbot, live_ctx, trained_home, tmp_path) -> None:
    files = [noise_png(tmp_path / "x.png", 16, 16, 21), noise_png(tmp_path / "y.png", 16, 24, 22)]
    first = make_page(qtbot, live_ctx, samples=2)
    drop(qtbot, first.drop_zone, files)
    wait_idle(qtbot, first)
    assert first.worker_calls == 2 and all(i.state == DONE and not i.cached for i in first.table_model.items)

    from PySide6.QtCore import QSettings

    from app.context import AppContext
    from app.settings import Settings

    # A second window on the same data folder with no session worker at all.
    offline = AppContext(trained_home, Settings(QSettings(str(tmp_path / "o.ini"), QSettings.Format.IniFormat)),
                         start_session=False)  # fmt: skip
    try:
        page = make_page(qtbot, offline, samples=2)
        assert offline.session is None
        drop(qtbot, page.drop_zone, files)
        wait_idle(qtbot, page, timeout=120_000)
        items = page.table_model.items
        assert [i.state for i in items] == [DONE, DONE] and all(i.cached for i in items)
        assert page.worker_calls == 0
        assert cell(page, items[0], 1) == "cached" and cell(page, items[0], 2) == cell(
            first, first.table_model.items[0], 2
        )
        assert page.samples_stack.currentIndex() == 1  # the std map comes back too
        page.seed.setValue(99)  # a setting that changes the result: a miss, and no worker to ask
        page.apply_to_all()
        qtbot.wait(300)
        assert "session worker is not running" in page.status.text() and page.worker_calls == 0
    finally:
        offline.shutdown()


def test_a_folder_of_thousands_of_files_shows_progress_and_cancels(qtbot, live_ctx, tmp_path: Path) -> None:
    folder = tmp_path / "many"
    rng = np.random.default_rng(0)
    for i in range(2000):
        sub = folder / f"part{i // 500}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(sub / f"img{i:04d}.png")
    page = make_page(qtbot, live_ctx)
    drop(qtbot, page.drop_zone, [folder])
    qtbot.waitUntil(lambda: len(page.table_model.items) == 2000 and not page._scans, timeout=30_000)
    qtbot.waitUntil(lambda: page.overall.value() >= 3, timeout=60_000)
    assert page.overall.maximum() == 2000 and page.cancel_button.isEnabled()
    assert "found" in page.status.text() or "Looking" in page.status.text() or page.overall.value() >= 3
    with qtbot.waitSignal(page.idle, timeout=120_000):
        page.cancel()
    states = [i.state for i in page.table_model.items]
    assert set(states) <= {DONE, CANCELLED, ERROR} and states.count(CANCELLED) > 1900
    assert page.overall.value() == 2000 and not page.cancel_button.isEnabled()
    assert "Cancelled" in page.status.text() or "cancelled" in page.status.text()
    # The worker is still there: one more image goes through.
    drop(qtbot, page.drop_zone, [noise_png(tmp_path / "after.png", 8, 8, 5)])
    wait_idle(qtbot, page)
    assert page.table_model.items[-1].state == DONE


def test_a_dropped_photo_shows_its_input_before_its_reconstruction_arrives(qtbot, live_ctx, tmp_path: Path) -> None:
    page = make_page(qtbot, live_ctx)
    page.steps.setValue(400)  # the reconstruction takes a while; the input must not wait for it
    photo = noise_png(tmp_path / "photo.png", 48, 64, 51)
    drop(qtbot, page.drop_zone, [photo])
    [item] = page.table_model.items
    left, right = page.side.views
    qtbot.waitUntil(left.has_image, timeout=120_000)
    assert item.entry is None and item.state in (CHECKING, RUNNING)  # no result yet, not even a partial one
    assert page._shown is item and page.side.titles[0].text() == "Input" and not right.has_image()
    shown = array_from_qimage(left.item.pixmap().toImage())
    assert np.array_equal(shown, np.asarray(Image.open(photo).convert("RGB")))  # decoded from the file itself
    save_artifact(page, "reconstruct-input-first")
    with qtbot.waitSignal(page.idle, timeout=120_000):
        page.cancel()
    assert item.state == CANCELLED


def test_cancel_stops_the_image_inside_the_worker(qtbot, live_ctx, tmp_path: Path) -> None:
    page = make_page(qtbot, live_ctx)
    page.steps.setValue(400)  # long enough to cancel in the middle
    drop(qtbot, page.drop_zone, [noise_png(tmp_path / "slow.png", 64, 64, 31)])
    qtbot.waitUntil(lambda: page.table_model.items[0].done >= 3, timeout=60_000)
    with qtbot.waitSignal(page.idle, timeout=120_000):
        page.cancel()
    item = page.table_model.items[0]
    assert item.state == CANCELLED and item.entry is None and cell(page, item, 1) == "cancelled"


def test_paste_then_export_writes_reconstructions_strips_and_csv(qtbot, live_ctx, tmp_path: Path) -> None:
    page = make_page(qtbot, live_ctx, samples=2)
    arr = np.asarray(Image.open(noise_png(tmp_path / "clip.png", 24, 24, 41)))
    image = QImage(arr.tobytes(), 24, 24, 72, QImage.Format.Format_RGB888).copy()
    QApplication.clipboard().setImage(image)
    page.paste_from_clipboard()
    drop(qtbot, page.drop_zone, [tmp_path / "missing.png"])
    wait_idle(qtbot, page)
    pasted, missing = page.table_model.items
    assert pasted.state == DONE and Path(pasted.path).parent == Path(live_ctx.home) / "cache" / "pasted"
    assert np.array_equal(np.asarray(Image.open(pasted.entry["files"]["input"])), arr)
    assert missing.state == ERROR
    out = tmp_path / "export"
    with qtbot.waitSignal(page.exported, timeout=120_000) as blocker:
        page.export_to(out)
    _folder, written, problems = blocker.args
    assert written == 1 and problems == []
    stem = Path(pasted.path).stem
    for suffix in ("recon", "mean", "std", "compare"):
        assert (out / f"{stem}.{suffix}.png").is_file(), suffix
    strip = np.asarray(Image.open(out / f"{stem}.compare.png"))
    assert strip.shape[1] > 4 * 96
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["model"] for r in rows] == ["A", "A"] and rows[0]["psnr_db"] and "file not found" in rows[1]["error"]


def test_preselection_prefers_the_users_runs_over_the_demo_model() -> None:
    demo = ModelChoice(1, DEMO_RUN_NAME, "completed", {}, ((1, 100),))
    mine = ModelChoice(2, "mine", "completed", {}, ((2, 10),))
    assert preferred([demo]) is demo
    assert preferred([mine, demo]) is mine and preferred([demo, mine]) is mine
    assert preferred([]) is None
