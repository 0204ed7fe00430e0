"""First launch with the shipped demo model: the welcome on the Runs page and its three starts, the demo run
preselected on Reconstruct/Latents/Generate while the user has no runs, and a bundled sample photo dropped
onto Reconstruct giving a reconstruction with its PSNR (real session worker, real demo bundle)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image
from test_reconstruct_page import drop, wait_idle

from app.models.jobs import DONE
from ul_engine.core.config import load_preset
from ul_engine.core.demo import SHIPPED, demo_folder, sample_photos


@pytest.fixture(scope="module")
def demo_bundle() -> Path:
    folder = demo_folder()
    if folder is None:
        pytest.fail("the shipped demo model (resources/models/demo/) is missing or incomplete")
    return folder


@pytest.fixture
def first_window(qtbot, make_ctx, demo_bundle):
    """The main window on an empty data folder, as `ul-studio` opens it (the demo registered)."""
    from app.main_window import MainWindow

    ctx = make_ctx(install_demo=True)
    w = MainWindow(ctx, restore=False)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    ctx.start()
    yield w
    w._close_ready = True
    w.close()


def demo_id(window) -> int:
    [row] = [r for r in window.ctx.repo.ordered() if r.info.status == SHIPPED]
    return row.id


def test_first_launch_shows_the_welcome_and_the_demo_run_until_the_user_has_a_run(qtbot, first_window) -> None:
    runs = first_window.runs
    assert first_window.current_page_id() == "runs"
    assert runs.welcome.isVisible()
    assert runs.welcome.reconstruct_button.isEnabled()
    info = first_window.ctx.store.get_run("demo")
    assert (info.stage, info.status) == (2, SHIPPED)
    assert runs.model.rowCount() == 1
    # the demo cannot be started or resumed from the Runs page
    runs.select_run(info.id)
    assert not runs.act_start.isEnabled() and not runs.act_resume.isEnabled()
    first_window.ctx.store.create_run(name="mine", stage=1, preset="smoke", config={})
    first_window.ctx.repo.refresh()
    qtbot.waitUntil(lambda: not runs.welcome.isVisible(), timeout=120_000)


def test_reconstruct_a_photo_opens_reconstruct_with_the_demo_model(qtbot, first_window) -> None:
    qtbot.mouseClick(first_window.runs.welcome.reconstruct_button, _left())
    assert first_window.current_page_id() == "reconstruct"
    chosen = first_window.page("reconstruct").picker.current()
    assert chosen["run_name"] == "demo" and chosen["run_id"] == demo_id(first_window)


def test_train_on_shapes_opens_a_new_run_with_the_shapes_preset(qtbot, first_window) -> None:
    qtbot.mouseClick(first_window.runs.welcome.shapes_button, _left())
    dialog = first_window.runs.last_dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.preset_name() == "shapes-32"
    assert dialog.form.values()["data.kind"] == "shapes"
    created = dialog.create_run(start=False)
    assert created is not None and created.preset == "shapes-32"


def test_the_shapes_start_states_the_presets_own_stage_1_duration(qtbot) -> None:
    """The welcome's button, its tooltip and the docs that quote it promise what the preset's description says."""
    from app.pages.welcome import WelcomePanel

    panel = WelcomePanel()
    qtbot.addWidget(panel)
    description = load_preset("shapes-32")["description"]
    stage1 = re.search(r"Stage 1: [\d,]+ steps, (about \d+ minutes)", description)
    assert stage1 is not None, description
    text = panel.shapes_button.text()
    assert text == f"Train on shapes ({stage1.group(1)} on 2 CPU cores)"
    assert description in panel.shapes_button.toolTip()
    root = Path(__file__).resolve().parents[2]
    for doc in ("README.md", "docs/user-guide.md"):
        assert f"**{text}**" in (root / doc).read_text(), doc


def test_train_on_my_folder_asks_for_a_folder_then_opens_folder_64_on_it(
    qtbot, first_window, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.pages.runs import RunsPage

    folder = tmp_path / "my photos"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (80, 70), (40 * i, 90, 160)).save(folder / f"p{i}.png")
    monkeypatch.setattr(RunsPage, "ask_training_folder", staticmethod(lambda parent: ""))
    qtbot.mouseClick(first_window.runs.welcome.folder_button, _left())
    assert first_window.runs.last_dialog is None  # cancelled: no form
    monkeypatch.setattr(RunsPage, "ask_training_folder", staticmethod(lambda parent: str(folder)))
    qtbot.mouseClick(first_window.runs.welcome.folder_button, _left())
    dialog = first_window.runs.last_dialog
    assert dialog is not None and dialog.isVisible()
    values = dialog.form.values()
    assert dialog.preset_name() == "folder-64"
    assert (values["data.kind"], values["data.path"]) == ("image-folder", str(folder))
    assert dialog.validate_now() == {}
    created = dialog.create_run(start=False)
    assert created is not None and created.config["data"]["path"] == str(folder)


def test_latents_and_generate_preselect_the_demo_while_the_user_has_no_run(qtbot, first_window) -> None:
    demo = demo_id(first_window)
    for page_id in ("latents", "generate"):
        first_window.show_page(page_id)
        page = first_window.page(page_id)
        page.runs.refresh()
        assert page.runs.run_id() == demo, page_id


def test_the_users_own_run_is_preferred_over_the_demo(qtbot, make_ctx, demo_bundle, tmp_path: Path) -> None:
    from app.widgets.run_combo import RunCombo

    ctx = make_ctx(install_demo=True)
    mine = ctx.store.create_run(name="mine", stage=2, preset="smoke", config={})
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"x")
    ctx.store.add_checkpoint(mine.id, step=5, path=weights, sha256="0" * 64)
    combo = RunCombo(ctx.store, stage=2)
    qtbot.addWidget(combo)
    combo.refresh()
    assert combo.run_id() == mine.id and combo.count() == 2


def test_a_dropped_sample_photo_reconstructs_with_the_demo_model_and_shows_its_psnr(
    qtbot, make_ctx, demo_bundle
) -> None:
    """A bundled held-out photo at its full 451×300 (in the demo's 64-pixel tiles), 2 decoder steps."""
    from app.pages.reconstruct import ReconstructPage

    photos = sample_photos()
    assert photos, "resources/samples/ holds the demo's held-out photos"
    photo = photos[0]
    ctx = make_ctx(install_demo=True, start_session=True)
    ctx.start()
    page = ReconstructPage(ctx)
    qtbot.addWidget(page)
    page.resize(1280, 760)
    page.show()
    qtbot.waitExposed(page)
    assert page.picker.current()["run_name"] == "demo"  # preselected: the user has no run of their own
    page.steps.setValue(2)
    page.samples.setValue(1)
    drop(qtbot, page.drop_zone, [photo])
    wait_idle(qtbot, page, timeout=300_000)
    [item] = page.table_model.items
    assert item.state == DONE, item.entry
    psnr = item.entry["metrics"]["psnr"]
    assert 5.0 < psnr < 60.0 and item.entry["metrics"]["bits_per_pixel"] > 0
    assert Image.open(item.entry["files"]["reconstruction"]).size == Image.open(photo).size
    assert page._shown is item and f"{psnr:.2f}" in page.metrics_panel.text()


def _left():
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton
