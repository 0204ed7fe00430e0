"""The New run form: engine validation shown inline (and no run created), every config field reachable,
knobs that write the config, a dataset chooser that counts a folder's readable images, and stage 2."""

from __future__ import annotations

import re
from pathlib import Path

from ul_app_testkit import save_artifact, seed_run, write_png

from app.models.run_form import with_downsampling
from app.pages.new_run import NewRunDialog
from ul_engine.core.config import RunConfig, load_preset, schema_fields, validate


def open_dialog(qtbot, ctx, **kwargs) -> NewRunDialog:
    dialog = NewRunDialog(ctx, **kwargs)
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


def test_an_invalid_field_shows_the_engines_message_and_creates_no_run(qtbot, ctx, store) -> None:
    dialog = open_dialog(qtbot, ctx, preset="smoke")
    dialog.knobs.loss_factor.setValue(-1.0)
    assert dialog.create_run(start=True) is None
    row = dialog.knobs.rows["loss.loss_factor"]
    assert row.error.isVisible()
    assert row.error.text() == "-1.0 is out of range (allowed (0.0, 10.0])"
    assert dialog.knobs.loss_factor.property("invalid") is True
    assert dialog.form.editors["loss.loss_factor"].error.text() == row.error.text()
    assert store.list_runs() == [] and store.list_jobs() == []
    assert dialog.isVisible()
    save_artifact(dialog, "dialog-new-run-invalid")

    dialog.knobs.loss_factor.setValue(2.0)
    assert dialog.validate_now() == {}
    assert not row.error.isVisible() and dialog.knobs.loss_factor.property("invalid") is False


def test_cross_field_errors_mark_the_fields_they_name(qtbot, ctx, store) -> None:
    dialog = open_dialog(qtbot, ctx, preset="smoke")
    dialog.knobs.resolution.setValue(18)  # smoke downsamples by 4
    errors = dialog.validate_now()
    assert "config" in errors and "data.resolution" in errors["config"]
    assert dialog.knobs.rows["data.resolution"].error.isVisible()
    assert dialog.banner.isVisible() and "multiple" in dialog.banner.text()
    assert dialog.create() is None and store.list_runs() == []


def test_advanced_text_fields_reach_the_engine_unclamped(qtbot, ctx, store) -> None:
    dialog = open_dialog(qtbot, ctx, preset="smoke")
    dialog.advanced_toggle.setChecked(True)
    editor = dialog.form.editors["model.prior.heads"]
    editor.widget.setText("5")  # 64 is not divisible by 5
    editor.widget.textEdited.emit("5")
    errors = dialog.validate_now()
    assert any("model.prior.width (64) must be divisible by model.prior.heads (5)" in m for m in errors.values())
    assert editor.error.isVisible()
    editor.widget.setText("lots")
    assert "model.prior.heads" in dialog.validate_now()
    assert dialog.create() is None and store.list_runs() == []


def test_every_config_field_is_reachable(qtbot, ctx) -> None:
    dialog = open_dialog(qtbot, ctx)
    reachable = set(dialog.form.editors) | {"preset", "description", "stage"}
    assert reachable == {f["path"] for f in schema_fields()}
    for editor in dialog.form.editors.values():
        assert editor.widget.toolTip().strip()  # each knob explains itself
    for row in dialog.knobs.rows.values():
        assert row.widget.toolTip().strip()


def test_knobs_write_the_config_that_is_created(qtbot, ctx, store) -> None:
    ctx.runner.enabled = False
    dialog = open_dialog(qtbot, ctx, preset="smoke")
    dialog.name.setText("knobbed")
    dialog.knobs.loss_factor.setValue(2.5)
    dialog.knobs.sigmoid_bias.setValue(-1.0)
    dialog.knobs.latent_channels.setValue(8)
    dialog.knobs.downsampling.setCurrentIndex(dialog.knobs.downsampling.findData(8))
    dialog.knobs.steps.setValue(40)
    dialog.knobs.batch.setValue(8)
    dialog.knobs.device.setCurrentIndex(dialog.knobs.device.findData("cpu"))
    run = dialog.create_run(start=True)
    assert run is not None
    cfg = validate(run.config)
    assert (cfg.loss.loss_factor, cfg.loss.sigmoid_bias, cfg.model.latent_channels) == (2.5, -1.0, 8)
    assert cfg.model.downsample() == 8 and cfg.train.steps == 40 and cfg.optim.batch_size == 8
    assert cfg.train.device == "cpu" and run.total_steps == 40 and run.name == "knobbed"
    assert [(j.run_id, j.device) for j in store.list_jobs("queued")] == [(run.id, "cpu")]
    assert store.get_run(run.id).status == "queued"


def test_budget_in_minutes(qtbot, ctx, store) -> None:
    dialog = open_dialog(qtbot, ctx, preset="smoke")
    dialog.knobs.by_minutes.setChecked(True)
    dialog.knobs.minutes.setValue(2.5)
    run = dialog.create_run(start=False)
    cfg = validate(run.config)
    assert (cfg.train.steps, cfg.train.minutes, run.total_steps) == (0, 2.5, None)


def test_downsampling_keeps_encoder_and_decoder_in_step() -> None:
    base = {f"model.{k}": v for k, v in (("encoder.channels", [16, 32, 32]), ("decoder.channels", [16, 32]),
                                         ("encoder.patch", 1), ("decoder.patch", 1))}  # fmt: skip
    for factor in (2, 4, 8, 16, 32):
        flat = {**base, **with_downsampling(base, factor)}
        raw = RunConfig().to_dict()
        raw["data"]["resolution"] = 64
        raw["model"]["encoder"].update(channels=flat["model.encoder.channels"], patch=flat["model.encoder.patch"])
        raw["model"]["decoder"].update(channels=flat["model.decoder.channels"], patch=flat["model.decoder.patch"])
        assert validate(raw).model.downsample() == factor


def test_folder_dataset_counts_readable_images_and_shows_thumbnails(qtbot, ctx, tmp_path: Path) -> None:
    folder = tmp_path / "images"
    for i in range(5):
        write_png(folder / f"img{i}.png", seed=i, size=(40, 40))
    (folder / "broken.png").write_bytes(b"not a png")
    (folder / "notes.txt").write_text("ignored")
    dialog = open_dialog(qtbot, ctx, preset="folder-64")
    chooser = dialog.knobs.dataset
    assert chooser.folder.isChecked()
    chooser.path.setText(str(folder))
    chooser.path.textEdited.emit(str(folder))
    with qtbot.waitSignal(chooser.scanned, timeout=120_000) as blocker:
        pass
    result = blocker.args[0]
    assert result["readable"] == 5 and result["files"] == 6 and "broken.png" in result["skipped"]
    assert chooser.count.text().startswith("5 readable images")
    assert sum(1 for t in chooser.thumbs if t.isVisible()) == 5
    assert dialog.form.value("data.path") == str(folder)
    assert "data.path" not in dialog.validate_now()
    save_artifact(dialog, "dialog-new-run-folder")

    chooser.path.setText(str(tmp_path / "missing"))
    chooser.path.textEdited.emit(str(tmp_path / "missing"))
    with qtbot.waitSignal(chooser.scanned, timeout=120_000) as blocker:
        pass
    assert "not found" in chooser.count.text()


def test_stage2_form_builds_on_a_checkpoint(qtbot, ctx, store) -> None:
    parent = seed_run(store, name="stage1")
    ck_file = store.run_dir(parent) / "checkpoints" / "step-00000060.safetensors"
    ck_file.parent.mkdir(parents=True)
    ck_file.write_bytes(b"x")
    ck = store.add_checkpoint(parent, step=60, path=ck_file, sha256="ab" * 32)
    ctx.repo.refresh()
    ctx.runner.enabled = False
    dialog = open_dialog(qtbot, ctx, parent_run=store.get_run(parent), preset="smoke")
    assert dialog.stage == 2 and dialog.windowTitle() == "Train stage 2 from stage1"
    assert not dialog.knobs.loss_factor.isEnabled() and not dialog.form.editors["data.resolution"].widget.isEnabled()
    assert dialog.form.editors["model.base.heads"].widget.isEnabled()
    for stage2_loss in ("loss.base_sigmoid_bias", "loss.base_weighting"):  # the stage-2 loss stays editable
        assert dialog.form.editors[stage2_loss].widget.isEnabled()
    assert dialog.checkpoint_combo.currentData() == ck.id
    run = dialog.create_run(start=False)
    assert run is not None and run.stage == 2 and run.parent_run_id == parent and run.parent_checkpoint_id == ck.id
    assert run.config["model"]["encoder"] == store.get_run(parent).config["model"]["encoder"]


def test_speed_estimate_is_read_from_the_cache(qtbot, ctx) -> None:
    ctx.settings.set_estimate("smoke", "cpu", 125.0)
    dialog = open_dialog(qtbot, ctx, preset="smoke")
    dialog.knobs.device.setCurrentIndex(dialog.knobs.device.findData("cpu"))
    assert "2 min 05 s per 1 000 steps on cpu" in dialog.speed.estimate.text()
    assert "this run ≈ 8 s" in dialog.speed.estimate.text()  # smoke: 60 steps
    dialog.preset.setCurrentIndex(dialog.preset.findData("shapes-32"))
    assert "not measured" in dialog.speed.estimate.text()


def test_shapes_32_states_its_budget_and_the_estimate_for_it_agrees(qtbot, ctx) -> None:
    """At the idle speed docs/benchmarks.md measured (0.465 s/step: 2 Intel Xeon cores, "The shapes-32 preset's
    budget"), the form's estimate for the preset's own budget is the stage-1 time its description states."""
    ctx.settings.set_estimate("shapes-32", "cpu", 465.0)
    dialog = open_dialog(qtbot, ctx, preset="shapes-32")
    dialog.knobs.device.setCurrentIndex(dialog.knobs.device.findData("cpu"))
    steps = load_preset("shapes-32")["train"]["steps"]
    assert dialog.form.values()["train.steps"] == steps
    stated = re.search(rf"Stage 1: {steps:,} steps, about (\d+) minutes", dialog.description.text())
    assert stated is not None, dialog.description.text()
    shown = re.search(r"this run ≈ (\d+) min (\d+) s", dialog.speed.estimate.text())
    assert shown is not None, dialog.speed.estimate.text()
    assert abs(int(shown[1]) + int(shown[2]) / 60 - int(stated[1])) <= 1


def test_measure_runs_a_short_trial_and_caches_it(qtbot, ctx) -> None:
    dialog = open_dialog(qtbot, ctx, preset="smoke")
    dialog.knobs.device.setCurrentIndex(dialog.knobs.device.findData("cpu"))
    assert ctx.settings.estimate("smoke", "cpu") is None
    dialog.speed.measure.click()
    qtbot.waitUntil(lambda: ctx.settings.estimate("smoke", "cpu") is not None, timeout=90_000)
    per_1000 = ctx.settings.estimate("smoke", "cpu")["seconds_per_1000"]
    assert 1 < per_1000 < 3600
    assert "per 1 000 steps on cpu" in dialog.speed.estimate.text() and dialog.speed.measure.isEnabled()


def test_trial_config_trains_shapes_without_checkpoints() -> None:
    from app.models.run_form import preset_values
    from app.workers.trial import trial_config

    cfg = validate(trial_config(preset_values("folder-64"), "cpu"))
    assert cfg.data.kind == "shapes" and cfg.data.resolution == 64 and cfg.stage == 1
    assert cfg.train.checkpoint_every > cfg.train.steps and cfg.train.device == "cpu"
