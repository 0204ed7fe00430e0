"""The full study's grid, as planned (nothing trained): one baseline for every ablation, the Table 2 knobs, the
prior-slack runs and the warm-started run, and commands that reproduce each."""

from __future__ import annotations

import shlex
from pathlib import Path

from ul_engine.eval.study.plan import (
    BASELINE_LF,
    TABLE2_KNOB,
    TABLE2_KNOBS,
    plan_study,
    reproduce_commands,
    stage1_config,
    warm_start_folder,
)


def test_every_ablation_runs_at_the_one_baseline_the_report_names() -> None:
    plan = plan_study(threads=1)
    assert plan.baseline_lf == BASELINE_LF == 3.0
    for key in ("normal", "mse", "lam10", "sg", "lv"):
        cfg = stage1_config(plan, plan.run_by_key(key))
        assert cfg.loss.loss_factor == BASELINE_LF, key
    base = plan.run_by_key("lf3")
    assert base.stage2 and base.prior_samples and base.slack
    assert stage1_config(plan, plan.run_by_key("lam10")).loss.latent_logsnr_max == 10
    assert plan_study(quick=True).baseline_lf == 10.0  # the quick nets leave c_lf 3 nearly empty


def test_table2_knobs_probe_at_1_5_and_the_chosen_one_spans_the_paper_range() -> None:
    plan = plan_study(threads=1)
    table2 = {r.key: stage1_config(plan, r) for r in plan.runs if r.group == "table2"}
    assert set(table2) == {f"lf1.5-{k}" for k in TABLE2_KNOBS} | {f"lf1.3-{TABLE2_KNOB}", f"lf2.1-{TABLE2_KNOB}"}
    assert table2["lf1.5-res"].loss.sigmoid_bias_resolution == 512
    assert table2["lf1.5-warm"].loss.rate_warmup_steps == 400
    assert table2["lf1.5-prior4"].optim.prior_updates_per_step == 4
    both = table2["lf1.5-reswarm"].loss
    assert (both.sigmoid_bias_resolution, both.rate_warmup_steps) == (512, 400)
    plain = stage1_config(plan, plan.run_by_key("lf1.5"))
    for cfg in table2.values():  # the knob is the only departure: off in the plain run
        assert cfg.train.steps == plain.train.steps == 800
    assert (plain.loss.sigmoid_bias_resolution, plain.loss.rate_warmup_steps) == (0, 0)
    assert plain.optim.prior_updates_per_step == 1


def test_slack_runs_train_a_longer_elbo_model_and_measure_kappa() -> None:
    plan = plan_study(threads=1)
    assert {r.key for r in plan.runs if r.slack} == {"lf3", "lf10"}
    assert plan.slack_steps == 2 * 800
    cmds = reproduce_commands(plan, plan.run_by_key("lf10"))
    train = next(c for c in cmds if "--name study-lf10-elbo" in c)
    assert "--stage 2 --from-run study-lf10" in train and "--steps 1600" in train
    assert 'loss.base_weighting="elbo"' in shlex.split(train)
    assert "ul eval --run study-lf10-elbo --slack --n 256 --json" in cmds


def test_the_warm_started_run_starts_from_the_exported_c_lf_10_run(tmp_path: Path) -> None:
    plan = plan_study(threads=1)
    warm = plan.run_by_key("lf1.5-from10")
    folder = warm_start_folder(tmp_path, plan, warm)
    cfg = stage1_config(plan, warm, str(folder))
    assert cfg.train.init_from == str(folder) and cfg.train.steps == 3200 and cfg.loss.loss_factor == 1.5
    assert folder == tmp_path / "study-bundles" / "study-lf10"
    cmds = reproduce_commands(plan, warm)
    assert cmds[0] == "ul export study-lf10 --out $UL_HOME/study-bundles/study-lf10"
    words = shlex.split(cmds[1].replace("$UL_HOME", str(tmp_path)))
    assert f'train.init_from="{folder}"' in words and words[words.index("--steps") + 1] == "3200"
    keys = [r.key for r in plan.runs]
    assert keys.index("lf10") < keys.index("lf1.5-from10")  # the study trains what it starts from first
