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
    assert page.class_combo.isEnabled() and page.class_combo.count() == 6  # smoke is class-conditional (4)
    assert page.class_combo.currentData() == "random"  # the default there: a class drawn per sample
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
    assert first.parent == env["home"] / "samples" / "s2" and first.name == "s2-seed000003.png"  # by name
    text = Image.open(first).text
    assert text["ul-run"] == "2" and text["ul-run-name"] == "s2" and text["ul-seed"] == "3"
    assert len(text["ul-checkpoint-sha256"]) == 64
    params = json.loads(text["ul-params"])
    assert params == {"base_steps": 4, "decoder_steps": 4, "sampler": "ancestral", "guidance": 1.0,
                      "class": params["class"]} and params["class"] in range(4)  # the class seed 3 got  # fmt: skip
    assert page.gallery.item(0).text() == f"seed 3 · class {params['class']}"
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
    sample = env["home"] / "samples" / "s2" / "s2-seed000004.png"
    original = np.asarray(Image.open(sample)).copy()
    _configure(page, n=5, seed=99, steps=9)
    page.sampler.setCurrentIndex(page.sampler.findData("ddim"))
    page.guidance.setValue(3.0)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(sample))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)  # fmt: skip
    page.dropEvent(event)
    recorded = json.loads(Image.open(sample).text["ul-params"])["class"]
    assert page.settings() == {"run": 2, "checkpoint": None, "n": 1, "seed": 4, "base_steps": 4, "decoder_steps": 4,
                               "sampler": "ancestral", "guidance": 1.0, "class": recorded}  # fmt: skip
    assert page.class_combo.currentText() == f"class {recorded}"
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
    window.show_page("latents")  # A and B are open on the stage-1 run, the interpolation shows a frame of them
    latents.runs.select(1)
    for slot, seed in (("a", 21), ("b", 22)):
        with qtbot.waitSignal(latents.analyzed, timeout=WAIT_MS):
            latents.set_image(slot, write_image(env["files"] / f"{slot}.png", seed))
    qtbot.waitUntil(lambda: not latents.interp.busy() and latents.interp.view.path is not None, timeout=WAIT_MS)
    used: list[str] = []
    decode = latents._frames

    def spy(done, **params):  # which latent each interpolation frame is decoded from
        if params.get("kind") == "interpolate":
            used.append(params["latent"])
        return decode(done, **params)

    latents._frames = spy
    window.show_page("generate")
    with qtbot.waitSignal(latents.analyzed, timeout=WAIT_MS):
        page.gallery.itemClicked.emit(item)
        assert window.current_page_id() == "latents"
    qtbot.waitUntil(lambda: (latents.results["a"] or {}).get("source") == "generated", timeout=WAIT_MS)
    assert latents.runs.info().name == "s2"
    assert latents.traj_seed.value() == 4 and latents.traj_base_steps.value() == 4
    qtbot.waitUntil(lambda: not latents.interp.busy(), timeout=WAIT_MS)
    del latents._frames
    assert used and used[-1] == latents.results["a"]["latent"]  # the interpolation is of the new A
    QApplication.processEvents()


def test_the_progress_bar_shows_what_its_label_says(qtbot, env) -> None:
    from PySide6.QtCore import QTimer

    page = env["page"]
    _configure(page, n=8, seed=40, steps=12)
    seen: list[tuple[int, str]] = []
    watch = QTimer()
    watch.setInterval(5)
    watch.timeout.connect(lambda: seen.append((page.progress.value(), page.progress.format())))
    with qtbot.waitSignal(page.finished, timeout=WAIT_MS):
        assert page.generate()
        watch.start()
    watch.stop()
    during = [(v, f) for v, f in seen if f.startswith("4 / 8")]
    # While the second chunk runs the bar stays at 4 of 8 (half, not nearly full); when a progress report of
    # the running chunk arrives in that time (how many do depends on the machine's load), the label names it.
    assert during and {v for v, _ in during} == {500}
    assert all(f == "4 / 8" or f.startswith("4 / 8 · next 4: ") for _, f in during), during
    for value, text in seen:
        done = int(text.split(" / ")[0])
        assert value == round(1000 * done / 8), (value, text)
    assert (page.progress.value(), page.progress.format()) == (1000, "8 / 8")


def _patch_dialogs(monkeypatch: pytest.MonkeyPatch, answer: Path) -> list[str]:
    """The folder dialog answers `answer`; returns the folders the dialogs opened in."""
    from PySide6.QtWidgets import QFileDialog

    opened: list[str] = []

    def choose(_parent, _title, start):
        opened.append(start)
        return str(answer)

    def save(_parent, _title, start, _filters):
        opened.append(str(Path(start).parent))
        return str(answer / "chosen.png"), "PNG image (*.png)"

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(choose))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(save))
    return opened


def test_samples_save_with_their_settings_from_the_button_and_the_context_menu(qtbot, env, monkeypatch) -> None:
    from PySide6.QtCore import QSettings

    from app.widgets.file_dialogs import default_folder

    page = env["page"]
    assert page.gallery.count() == 8 and page.save_button.isEnabled()
    QSettings().remove("dialogs/samples")
    out = env["files"] / "saved"
    out.mkdir()
    opened = _patch_dialogs(monkeypatch, out)
    page.gallery.clearSelection()
    page.gallery.item(1).setSelected(True)
    page.gallery.item(3).setSelected(True)
    assert page.act_save_selected.isEnabled() and page.act_save_selected.text() == "Save selected (2)…"
    page.act_save_selected.trigger()  # the Save… button's menu
    saved = sorted(p.name for p in out.iterdir())
    assert saved == ["s2-seed000041.png", "s2-seed000043.png"]
    assert opened == [str(default_folder())]  # the first dialog opens in Pictures (or home), not the cwd
    text = Image.open(out / "s2-seed000041.png").text
    assert text["ul-seed"] == "41" and json.loads(text["ul-params"])["base_steps"] == 12  # settings embedded
    assert "Saved 2 samples" in page.status.text()

    # right-click one sample: "Save this sample…" asks for a file name, in the folder used last time
    rect = page.gallery.visualItemRect(page.gallery.item(5))
    menu = page._gallery_menu(rect.center())
    actions = {a.text(): a for a in menu.actions() if a.text()}
    assert set(actions) == {"Save this sample…", "Save all (8)…", "Open in Latents"}
    menu.close()
    actions["Save this sample…"].trigger()
    assert opened[-1] == str(out)  # remembered
    assert np.array_equal(np.asarray(Image.open(out / "chosen.png")),
                          np.asarray(Image.open(page.gallery.paths()[5])))  # fmt: skip
    assert Image.open(out / "chosen.png").text["ul-seed"] == "45"

    page.save_all()  # the same names again: nothing is overwritten
    assert len(list(out.glob("s2-seed0000*.png"))) == 8 + 2

    blocked = env["files"] / "a-file"
    blocked.write_text("not a folder")
    _patch_dialogs(monkeypatch, blocked / "inside")
    assert page.save_all() == [] and "could not save" in page.status.text()  # one line, no traceback


def _write_sample(path: Path, **text: str) -> Path:
    from PIL.PngImagePlugin import PngInfo

    base = {"ul-run": "2", "ul-run-name": "s2", "ul-seed": "7",
            "ul-params": json.dumps({"base_steps": 5, "decoder_steps": 5, "sampler": "ddim", "guidance": 1.0,
                                     "class": 1})}  # fmt: skip
    base.update(text)
    info = PngInfo()
    zipped = base.pop("zip", None)
    for key, value in base.items():
        info.add_text(key, value, zip=key == zipped)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path, pnginfo=info)
    return path


def _drop(page, path: Path) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    page.dropEvent(QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                              Qt.KeyboardModifier.NoModifier))  # fmt: skip


BAD_PNGS = {
    "seed-40-digits": ({"ul-seed": "1" * 40}, "ul-seed"),
    "base-steps-1e12": ({"ul-params": json.dumps({"base_steps": 1e12, "decoder_steps": 4})}, "base_steps"),
    "base-steps-abc": ({"ul-params": json.dumps({"base_steps": "abc"})}, "base_steps"),
    "sampler-unknown": ({"ul-params": json.dumps({"sampler": "euler", "base_steps": 3})}, "sampler"),
    "class-missing": ({"ul-params": json.dumps({"class": 9, "base_steps": 3})}, "class 9"),
    "nested": ({"ul-params": "[" * 5_000 + "]" * 5_000}, "nested deeper"),
    "ztxt-bomb": (
        {"ul-params": json.dumps({"base_steps": 3, "pad": "x" * 3_000_000}), "zip": "ul-params"},
        "inflates beyond",
    ),
    "seed-too-big-for-the-page": ({"ul-seed": str(2**40)}, "largest seed"),
}


@pytest.mark.parametrize("case", sorted(BAD_PNGS))
def test_bad_png_settings_are_refused_whole_and_named_in_the_status_bar(qtbot, env, case: str) -> None:
    window, page = env["window"], env["page"]
    _configure(page, n=3, seed=12, steps=7)
    page.sampler.setCurrentIndex(page.sampler.findData("dpmpp2m"))
    before = page.settings()
    text, expected = BAD_PNGS[case]
    path = _write_sample(env["files"] / f"bad-{case}.png", **text)
    _drop(page, path)
    assert page.settings() == before  # nothing half applied
    assert page.status.text().startswith("Nothing changed:") and expected in page.status.text()
    assert expected in window.statusBar().currentMessage()

    good = _write_sample(env["files"] / "good.png")  # the same page takes a good one whole
    _drop(page, good)
    assert page.settings() == {"run": 2, "checkpoint": None, "n": 1, "seed": 7, "base_steps": 5, "decoder_steps": 5,
                               "sampler": "ddim", "guidance": 1.0, "class": 1}  # fmt: skip


def test_the_form_says_what_size_the_samples_are(qtbot, env) -> None:
    page = env["page"]
    env["window"].show_page("generate")
    label = page.form.size_label
    assert page.runs.info().name == "s2"
    assert label.isVisible() and label.text() == "Samples are 16×16 pixels: the size s2 was trained at."
