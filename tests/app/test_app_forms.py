"""Forms that hold their values and say what they mean: the mouse wheel scrolls a form instead of changing
the field under the pointer, and every field of the New run form explains itself in plain words."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QScrollArea, QWidget


def wheel(widget: QWidget, notches: int = -3) -> None:
    """A wheel turn over the middle of `widget`, through the application's event filters as a real one."""
    pos = widget.rect().center()
    event = QWheelEvent(QPointF(pos), QPointF(widget.mapToGlobal(pos)), QPoint(0, 0), QPoint(0, 120 * notches),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase,
                        False)  # fmt: skip
    QApplication.sendEvent(widget, event)


def test_the_wheel_scrolls_the_new_run_form_not_the_field_under_the_pointer(qtbot, window) -> None:
    runs = window.page("runs")
    dialog = runs.train_shapes()
    qtbot.waitExposed(dialog)
    spin = dialog.knobs.latent_channels
    scroll = dialog.findChild(QScrollArea)
    assert spin.focusPolicy() == Qt.FocusPolicy.StrongFocus  # the wheel never gives it focus
    before = spin.value()
    bar = scroll.verticalScrollBar()
    bar.setValue(0)
    scroll.ensureWidgetVisible(spin)
    top = bar.value()
    dialog.name.setFocus()
    assert not spin.hasFocus()
    wheel(spin, -3)  # scrolling down over the unfocused field
    assert spin.value() == before  # the value holds…
    assert bar.value() > top or bar.value() == bar.maximum()  # …and the form scrolled instead
    combo = dialog.knobs.downsampling
    index = combo.currentIndex()
    wheel(combo, -2)
    assert combo.currentIndex() == index

    spin.setFocus()  # a focused field keeps the wheel
    qtbot.waitUntil(spin.hasFocus, timeout=120_000)
    wheel(spin, 1)
    assert spin.value() == before + 1
    dialog.reject()


def test_the_demos_samples_go_to_a_folder_named_demo(qtbot, make_ctx, home) -> None:
    from app.pages.generate import GeneratePage
    from ul_engine.core.demo import ensure_demo_run

    ctx = make_ctx()
    demo = ensure_demo_run(ctx.store)
    assert demo is not None and demo.stage == 2
    page = GeneratePage(ctx)
    qtbot.addWidget(page)
    page.runs.refresh()
    assert page.runs.info().name == "demo"
    assert page.samples_folder() == home / "samples" / "demo"  # not runs/<id>/samples


def test_reconstruct_offers_model_b_comparisons_only_with_a_model_b_and_an_empty_list_says_so(qtbot, make_ctx) -> None:
    from app.pages.reconstruct import ReconstructPage
    from ul_engine.core.demo import ensure_demo_run

    ctx = make_ctx()
    demo = ensure_demo_run(ctx.store)
    page = ReconstructPage(ctx)
    qtbot.addWidget(page)
    page.show()
    page.refresh_models()
    assert "0 / 1" not in page.overall.text() and "No images" in page.overall.text()

    def enabled(key: str) -> bool:
        return page.pair.model().item(page.pair.findData(key)).isEnabled()

    assert page.compare_picker.current() is None
    assert not enabled("input-b") and not enabled("a-b") and enabled("input-a")
    page.pair.setCurrentIndex(page.pair.findData("input-b"))  # a stale choice falls back to A
    page._update_pairs()
    assert page.pair.currentData() == "input-a"
    page.compare_picker.select(demo.id)
    assert enabled("input-b") and enabled("a-b")
    page.compare_picker.select(None)
    assert not enabled("input-b")


def test_the_demo_row_shows_its_known_bits_per_pixel_and_psnr(qtbot, window, ctx) -> None:
    import json

    from ul_engine.core.demo import demo_folder, ensure_demo_run

    card = json.loads((demo_folder() / "model.json").read_text())["metrics"]
    demo = ensure_demo_run(ctx.store)
    ctx.repo.refresh()
    model = window.page("runs").model
    row = model.row_for(demo.id)
    assert model.data(model.index(row, 4)) == f"{card['bits_per_pixel']:.3g}"
    assert model.data(model.index(row, 5)) == f"{card['psnr']:.2f} dB"


def test_run_details_name_the_parent_checkpoints_step(qtbot, window, ctx, store, tmp_path) -> None:
    from ul_app_testkit import seed_run

    parent = seed_run(store, name="base1", steps=20)
    file = store.run_dir(parent) / "checkpoints" / "step-00001200.safetensors"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(b"weights")
    for step in (400, 800):  # earlier rows: the checkpoint's id is not its step
        store.add_checkpoint(parent, step=step, path=file.with_name(f"s{step}"), sha256=f"{step:064d}")
    ck = store.add_checkpoint(parent, step=1200, path=file, sha256="a" * 64)
    child = store.create_run(name="gen2", stage=2, preset="smoke", config=store.get_run(parent).config,
                             parent_run_id=parent, parent_checkpoint_id=ck.id)  # fmt: skip
    ctx.repo.refresh()
    runs = window.page("runs")
    runs.select_run(child.id)
    text = runs.details.toPlainText()
    assert "stage 2 of run base1 (1), checkpoint at step 1,200" in text
    assert f"checkpoint {ck.id}" not in text


def test_a_crashed_run_that_is_queued_again_no_longer_shows_its_old_error(qtbot, window, ctx, store) -> None:
    from ul_app_testkit import seed_run

    from app.models.runs_model import RUN_ID_ROLE

    run_id = seed_run(store, name="crashy", steps=10, status="failed")
    store.update_run(run_id, error="CUDA out of memory", exit_code=1)
    ctx.repo.refresh()
    runs = window.page("runs")
    runs.select_run(run_id)
    assert "error: CUDA out of memory" in runs.details.toPlainText()
    model = runs.model
    status = model.index(model.row_for(run_id), 2)
    assert "CUDA out of memory" in model.data(status, Qt.ItemDataRole.ToolTipRole)

    ctx.runner.enabled = False  # queued, not started: the error belongs to the session that crashed
    ctx.controller.start(run_id)
    ctx.repo.refresh()
    assert store.get_run(run_id).status == "queued" and store.get_run(run_id).error == "CUDA out of memory"
    assert model.data(status, RUN_ID_ROLE) == run_id
    assert "CUDA out of memory" not in runs.details.toPlainText() and "exit code" not in runs.details.toPlainText()
    assert "CUDA out of memory" not in (model.data(status, Qt.ItemDataRole.ToolTipRole) or "")


def test_the_rate_distortion_page_explains_itself_when_there_is_nothing_to_plot(qtbot, make_ctx, store) -> None:
    from ul_app_testkit import seed_run

    from app.pages.rate_distortion import RateDistortionPage

    ctx = make_ctx()
    page = RateDistortionPage(ctx)
    qtbot.addWidget(page)
    page.show()
    assert page.plot_stack.currentWidget() is page.empty and "No checkpoints yet" in page.empty.text()

    run = seed_run(store, name="fresh", steps=10)
    file = store.run_dir(run) / "checkpoints" / "step-00000010.safetensors"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(b"weights")
    store.add_checkpoint(run, step=10, path=file, sha256="b" * 64)
    page.refresh()
    assert page.plot_stack.currentWidget() is page.empty
    assert "Nothing evaluated yet" in page.empty.text() and "Evaluate missing" in page.empty.text()


def test_run_export_confirms_where_it_wrote_with_an_open_folder_button(qtbot, window, ctx, home, tmp_path,
                                                                      monkeypatch) -> None:  # fmt: skip
    from PySide6.QtWidgets import QMessageBox

    from app.pages.runs import RunsPage
    from ul_engine.cli.main import main as ul_main

    args = ["--home", str(home), "train", "--preset", "smoke", "--steps", "2", "--name", "tiny"]
    assert ul_main([*args, "--set", "train.threads=1", "--json"]) == 0
    ctx.repo.refresh()
    runs = window.page("runs")
    run_id = ctx.store.get_run("tiny").id
    runs.select_run(run_id)
    out = tmp_path / "bundles" / "tiny"
    monkeypatch.setattr(RunsPage, "ask_export_dir", staticmethod(lambda parent, name: str(out)))
    with qtbot.waitSignal(ctx.controller.export_finished, timeout=180_000) as done:
        runs.export()
    assert done.args[1], done.args[2]
    box = runs.last_export_box
    assert box is not None and box.isVisible() and box.windowTitle() == "Export finished"
    assert str(out) in box.text() and (out / "decoder.safetensors").is_file()
    labels = [b.text() for b in box.buttons()]
    assert "Open folder" in labels
    box.button(QMessageBox.StandardButton.Ok).click()


def test_every_field_of_the_new_run_form_explains_itself_and_says_what_to_expect(qtbot, ctx) -> None:
    from PySide6.QtWidgets import QAbstractButton, QAbstractSpinBox, QComboBox, QFormLayout, QLabel, QLineEdit

    from app import glossary
    from app.pages.new_run import NewRunDialog

    dialog = NewRunDialog(ctx, preset="folder-64")
    qtbot.addWidget(dialog)
    dialog.show()
    fields = [
        w for kind in (QLineEdit, QAbstractSpinBox, QComboBox, QAbstractButton) for w in dialog.findChildren(kind)
    ]
    fields = [w for w in fields if not isinstance(w.parent(), QAbstractSpinBox | QComboBox)]  # inner editors
    missing = [w.objectName() or w.metaObject().className() + ":" + getattr(w, "text", str)() for w in fields
               if not w.toolTip().strip()]  # fmt: skip
    assert len(fields) > 60 and not missing  # every input of the form and of Advanced has a tooltip
    assert dialog.knobs.loss_factor.toolTip() == glossary.tip("loss_factor")
    labels = {}
    for form in dialog.findChildren(QFormLayout):
        for row in range(form.rowCount()):
            label = form.itemAt(row, QFormLayout.ItemRole.LabelRole)
            field = form.itemAt(row, QFormLayout.ItemRole.FieldRole)
            if label and isinstance(label.widget(), QLabel) and field:
                labels[label.widget().text()] = field.widget()
    assert "Loss factor (c_lf)" in labels and "Sigmoid bias (b)" in labels  # the precise term stays in the label

    dialog.knobs.loss_factor.setValue(1.5)  # folder-64 keeps the paper's factor: say what that means
    assert "may carry almost nothing" in dialog.knobs.expect.text()
    dialog.knobs.loss_factor.setValue(10.0)
    assert "keep the picture" in dialog.knobs.expect.text() and "almost nothing" not in dialog.knobs.expect.text()
    descriptions = [dialog.preset.itemData(i, Qt.ItemDataRole.ToolTipRole) for i in range(dialog.preset.count())]
    assert all(d and any(w in d for w in ("minute", "hour", "GPU")) for d in descriptions)  # how long to expect
    dialog.reject()


def test_the_method_terms_have_plain_words_on_every_page(qtbot, make_ctx) -> None:
    from app import glossary
    from app.pages.generate import GeneratePage
    from app.pages.latents import LatentsPage
    from app.pages.reconstruct import ReconstructPage

    ctx = make_ctx()
    recon, gen, lat = ReconstructPage(ctx), GeneratePage(ctx), LatentsPage(ctx)
    for page in (recon, gen, lat):
        qtbot.addWidget(page)
    assert recon.samples.toolTip() == glossary.tip("samples_k")
    for combo in (recon.sampler, gen.sampler):
        tips = {combo.itemText(i): combo.itemData(i, Qt.ItemDataRole.ToolTipRole) for i in range(combo.count())}
        assert tips["ancestral"] == glossary.tip("ancestral") and all(tips.values())
    assert glossary.tip("noise_level") in lat.noise.value_label.toolTip()
    assert glossary.tip("kl1").startswith("KL at t = 1")
    from app.models.panels import PANELS

    assert next(p for p in PANELS if p.id == "kl1").tip == glossary.tip("kl1")
