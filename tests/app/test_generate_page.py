"""The Generate page with a real session worker on smoke runs: the gallery fills, Cancel stops, a saved PNG's
metadata round-trips into the page's settings (and redraws the same image), a click opens Latents."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QApplication
from ul_app_testkit import save_artifact
from ul_explore_testkit import trained_home, write_image

WAIT_MS = 180_000


@pytest.fixture(scope="module")
def env(qapp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from PySide6.QtCore import QSettings

    from app.context import AppContext
    from app.main_window import MainWindow
    from app.settings import Settings

    home = trained_home(tmp_path_factory, "generate")
    folder = tmp_path_factory.mktemp("generate-files")
    settings = Settings(QSettings(str(folder / "settings.ini"), QSettings.Format.IniFormat))
    ctx = AppContext(home, settings, start_session=True)
    window = MainWindow(ctx, restore=False)
    window.show()
    ctx.start()
    window.show_page("generate")
    yield {"ctx": ctx, "window": window, "page": window.page("generate"), "files": folder, "home": home}
    window._close_ready = True
    window.close()


def _configure(page, *, n: int, seed: int, steps: int) -> None:
    page.n.setValue(n)
    page.seed.setValue(seed)
    page.base_steps.setValue(steps)
    page.decoder_steps.setValue(steps)


def test_the_gallery_fills_and_pngs_carry_their_settings(qtbot, env) -> None:
    page = env["page"]
    assert page.runs.count() == 1 and page.runs.info().name == "s2"  # stage-2 runs only
    assert page.class_combo.isEnabled() and page.class_combo.count() == 5  # smoke is class-conditional (4)
    _configure(page, n=6, seed=3, steps=4)
    added: list[str] = []
    page.sample_added.connect(added.append)
    with qtbot.waitSignal(page.finished, timeout=WAIT_MS) as done:
        assert page.generate()
        assert not page.generate_button.isEnabled() and page.cancel_button.isEnabled()
    assert done.args[0]["samples"] == 6 and not done.args[0]["cancelled"]
    assert page.gallery.count() == 6 and page.progress.value() == 1000 and page.progress.format() == "6 / 6"
    assert "samples/s" in page.status.text()
    first = Path(added[0])
    assert first.parent == env["ctx"].store.run_dir(2) / "samples" and first.name == "s2-seed000003.png"
    text = Image.open(first).text
    assert text["ul-run"] == "2" and text["ul-run-name"] == "s2" and text["ul-seed"] == "3"
    assert len(text["ul-checkpoint-sha256"]) == 64
    assert json.loads(text["ul-params"]) == {"base_steps": 4, "decoder_steps": 4, "sampler": "ancestral",
                                             "guidance": 1.0, "class": None}  # fmt: skip
    save_artifact(env["window"], "generate-gallery")


def test_cancel_stops_between_steps(qtbot, env) -> None:
    page = env["page"]
    _configure(page, n=12, seed=100, steps=30)
    with qtbot.waitSignal(page.finished, timeout=WAIT_MS) as done:
        page.generate()
        qtbot.waitUntil(lambda: page.gallery.count() >= 1, timeout=WAIT_MS)  # the first chunk (4) arrived
        page.cancel()
    assert done.args[0]["cancelled"] and done.args[0]["samples"] == 4
    assert page.gallery.count() == 4 and "Cancelled" in page.status.text()
    assert page.generate_button.isEnabled() and not page.cancel_button.isEnabled()


def test_a_saved_png_restores_the_exact_settings(qtbot, env) -> None:
    page = env["page"]
    sample = env["ctx"].store.run_dir(2) / "samples" / "s2-seed000004.png"
    original = np.asarray(Image.open(sample)).copy()
    _configure(page, n=5, seed=99, steps=9)
    page.sampler.setCurrentIndex(page.sampler.findData("ddim"))
    page.guidance.setValue(3.0)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(sample))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)  # fmt: skip
    page.dropEvent(event)
    assert page.settings() == {"run": 2, "checkpoint": None, "n": 1, "seed": 4, "base_steps": 4, "decoder_steps": 4,
                               "sampler": "ancestral", "guidance": 1.0, "class": None}  # fmt: skip
    assert "restored" in page.status.text() and "step 20" in page.checkpoint_label.text()
    sample.unlink()
    with qtbot.waitSignal(page.finished, timeout=WAIT_MS):
        page.generate()
    assert np.array_equal(np.asarray(Image.open(sample)), original)  # the same image again

    plain = write_image(env["files"] / "plain.png", 0)
    assert not page.load_settings_from_png(plain)
    assert "carries no UL Studio sample settings" in page.status.text()


def test_clicking_a_sample_opens_it_in_latents(qtbot, env) -> None:
    window, page = env["window"], env["page"]
    item = page.gallery.item(0)
    latents = window.page("latents")
    with qtbot.waitSignal(latents.analyzed, timeout=WAIT_MS):
        page.gallery.itemClicked.emit(item)
        assert window.current_page_id() == "latents"
    assert latents.runs.info().name == "s2" and latents.results["a"]["source"] == "generated"
    assert latents.traj_seed.value() == 4 and latents.traj_base_steps.value() == 4
    QApplication.processEvents()
