"""The `ul` command: a stable contract for the app, the docs and outside scripts.

`--json` prints exactly one JSON object as the last line of stdout. A mistake a user can make prints
one line naming the problem and exits 2, without a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ul_engine.bench import app as ui_bench
from ul_engine.cli.doctor import diagnose
from ul_engine.cli.ecosystem import COMMANDS as ECOSYSTEM_COMMANDS
from ul_engine.cli.ecosystem import add_parsers as add_ecosystem_parsers
from ul_engine.cli.ecosystem import cmd_export_diffusers
from ul_engine.core import __version__, json_output
from ul_engine.core.errors import RunStateError, ULError
from ul_engine.core.sample_settings import class_choice
from ul_engine.core.samplers import SAMPLERS
from ul_engine.core.user_paths import check_file, check_output_file, check_output_folder

if TYPE_CHECKING:  # names for the signatures; the commands import them when they run
    from ul_engine.core.supervisor import LaunchOptions
    from ul_engine.store import Store

EXIT_USER_ERROR = 2
EXIT_KEY = "_exit_code"  # a command's result may carry a non-zero exit (e.g. some inputs failed)


class _Parser(argparse.ArgumentParser):
    json_errors = False
    """Set by `main` when `--json` is on the command line: a usage error then also ends with one JSON object."""

    def error(self, message: str) -> NoReturn:  # argparse's default exits 2 too; keep one line
        sys.stderr.write(f"ul: error: {message}\n")
        if _Parser.json_errors:
            _emit_json({"error": message, "usage_error": True})
        self.exit(EXIT_USER_ERROR)


# ---- argument types: checked while parsing, so a bad value costs no work ---------------------------------


def _whole(lo: int, hi: int | None = None) -> Any:
    """An int type accepting lo ≤ value (≤ hi)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            span = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
            raise argparse.ArgumentTypeError(f"must be {span}, got {value}")
        return value

    return parse


def _number(lo: float, hi: float | None = None, *, above: bool = False) -> Any:
    """A finite float type accepting lo ≤ value (lo < value with `above`) and value ≤ hi."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        too_low = value <= lo if above else value < lo
        if not math.isfinite(value) or too_low or (hi is not None and value > hi):
            span = f"{'above' if above else 'at least'} {lo:g}" + (f" and at most {hi:g}" if hi is not None else "")
            raise argparse.ArgumentTypeError(f"must be a finite number {span}, got {text}")
        return value

    return parse


def _checked(check: Any) -> Any:
    """A path type running one of ul_engine.core.user_paths' checks; its one-line message becomes the usage error."""

    def parse(text: str) -> Path:
        try:
            return Path(check(Path(text).expanduser()))
        except ULError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


_out_folder = _checked(check_output_folder)
_out_file = _checked(check_output_file)
_in_file = _checked(check_file)
_home = _checked(lambda p: check_output_folder(p, writable=False))  # a read-only data folder is fine for reading


def _class_arg(text: str) -> int | str:
    try:
        choice = class_choice(text)
    except ULError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    assert choice is not None
    return choice


STEPS = _whole(1)
DECODER_STEPS = _whole(1, 4096)
SEED = _whole(0, 2**62 - 1)
COUNT = _whole(1)
STEP = _whole(0)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ul", description="Train and use Unified Latents models.")
    p.add_argument("--version", action="version", version=f"ul-studio {__version__}")
    p.add_argument("--home", type=_home, help="data folder (default: $UL_HOME or the user data folder)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="create a run and train it")
    t.add_argument("--preset", default="shapes-32")
    t.add_argument("--stage", type=int, choices=(1, 2), default=1)
    t.add_argument("--from-run", help="stage 2: the stage-1 run (id or name)")
    t.add_argument("--checkpoint", type=STEP, help="stage 2: a checkpoint step of --from-run (default: latest)")
    _budget(t)
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    t.add_argument("--name")
    t.add_argument("--device", choices=("auto", "cpu", "cuda"))
    t.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    t.add_argument("--queue", action="store_true", help="add the run to the queue instead of training now")
    _launch_flags(t)
    t.add_argument("--json", action="store_true")

    r = sub.add_parser("resume", help="continue a run from its latest checkpoint (or un-pause a live one)")
    r.add_argument("run")
    _budget(r)
    _launch_flags(r)
    r.add_argument("--json", action="store_true")

    for name, text in (("pause", "pause a training run (the model stays loaded)"), ("stop", "stop a run cleanly")):
        c = sub.add_parser(name, help=text)
        c.add_argument("run")
        c.add_argument("--json", action="store_true")
        if name == "stop":
            c.add_argument("--grace", type=_number(0.0, 3600.0), default=10.0, help="seconds before SIGTERM")

    d = sub.add_parser("delete", help="delete a run, its files and its metrics")
    d.add_argument("run")
    d.add_argument("--yes", action="store_true", help="do not ask")
    d.add_argument("--json", action="store_true")

    q = sub.add_parser("queue", help="the persistent training queue")
    q.add_argument("action", choices=("list", "add", "move", "cancel", "run"), nargs="?", default="list")
    q.add_argument("target", nargs="?", help="add: a run; move/cancel: a job id")
    q.add_argument("position", nargs="?", type=STEP, help="move: the new position (0 = first)")
    q.add_argument("--device", default="cpu")
    q.add_argument("--json", action="store_true")

    ls = sub.add_parser("runs", help="list runs")
    ls.add_argument("--json", action="store_true")

    rc = sub.add_parser("reconstruct", help="encode and decode images through a run's latent")
    rc.add_argument("--run", required=True)
    rc.add_argument("inputs", nargs="+", metavar="INPUT")
    rc.add_argument("--out", type=_out_folder, default="reconstructions")
    rc.add_argument("--decoder-steps", type=DECODER_STEPS)
    rc.add_argument("--sampler", choices=SAMPLERS)
    rc.add_argument("--seed", type=SEED, default=0)
    rc.add_argument("--checkpoint", type=STEP, metavar="STEP", help="the run's checkpoint at STEP (default: latest)")
    rc.add_argument("--compare", metavar="RUN2", help="also reconstruct with RUN2 (same image, seeds, parameters)")
    rc.add_argument("--compare-checkpoint", type=STEP, metavar="STEP", help="RUN2's checkpoint (default: latest)")
    rc.add_argument("--samples", type=_whole(1, 64), default=1, metavar="K",
                    help="K decodes with different seeds; writes their mean and std map beside the output")  # fmt: skip
    rc.add_argument("--max-frames", type=COUNT, metavar="N", help="videos: reconstruct at most the first N frames")
    rc.add_argument("--json", action="store_true")

    s = sub.add_parser("sample", help="generate images with a stage-2 run")
    s.add_argument("--run", required=True)
    s.add_argument("--checkpoint", type=STEP, metavar="STEP", help="the run's checkpoint at STEP (default: latest)")
    s.add_argument("--n", type=_whole(1, 100_000), default=8)
    s.add_argument("--out", type=_out_folder, default="samples")
    s.add_argument("--steps", type=STEPS, help="base-model steps")
    s.add_argument("--decoder-steps", type=DECODER_STEPS)
    s.add_argument("--sampler", choices=SAMPLERS)
    s.add_argument("--seed", type=SEED, default=0)
    s.add_argument("--guidance", type=_number(0.0, 50.0), default=None, help="classifier-free guidance (1: none)")
    s.add_argument(
        "--class", dest="class_label", type=_class_arg, metavar="K|random",
        help="class-conditional runs: sample class K, or 'random' (each sample's class drawn from its seed); "
        "default: unconditional",
    )  # fmt: skip
    s.add_argument("--frames", type=COUNT, metavar="N", help="video runs: frames per clip (default: the clip length)")
    s.add_argument(
        "--context", type=_in_file, metavar="VIDEO", help="video runs: continue this clip from its first frames"
    )
    s.add_argument("--context-frames", type=COUNT, metavar="K", help="with --context: how many frames are given")
    s.add_argument("--format", dest="video_format", choices=("mp4", "gif"), default="mp4", help="video runs")
    s.add_argument("--json", action="store_true")

    ip = sub.add_parser("interpolate", help="a video of decodes between two images' latents")
    ip.add_argument("--run", required=True)
    ip.add_argument("inputs", nargs=2, metavar="IMAGE", help="the two images (A and B)")
    ip.add_argument("--frames", type=_whole(2, 2000), default=24)
    ip.add_argument("--out", type=_out_file, required=True, help="an .mp4 or .gif file")
    ip.add_argument("--mode", choices=("slerp", "lerp"), default="slerp")
    ip.add_argument("--decoder-steps", type=DECODER_STEPS)
    ip.add_argument("--sampler", choices=SAMPLERS)
    ip.add_argument("--seed", type=SEED, default=0)
    ip.add_argument(
        "--fps",
        type=_number(0.0, 240.0, above=True),
        default=12.0,
        help="frames per second (a GIF holds 100/k for whole k ≥ 2; the JSON says what the file holds)",
    )
    ip.add_argument("--json", action="store_true")

    e = sub.add_parser("eval", help="PSNR, SSIM and bits on a fixed validation set")
    e.add_argument("--run", required=True)
    e.add_argument("--n", type=_whole(1, 100_000), default=64)
    e.add_argument("--decoder-steps", type=DECODER_STEPS)
    e.add_argument("--checkpoint", type=STEP, metavar="STEP", help="a checkpoint step (default: the latest)")
    e.add_argument(
        "--fd",
        type=STEP,
        default=0,
        metavar="N",
        help="FD-shapes (image runs) or FVD-bouncing (video runs) of N stage-2 samples against N validation items",
    )
    e.add_argument("--prior-samples", action="store_true", help="with --fd: sample the stage-1 prior instead")
    e.add_argument(
        "--reconstructions",
        action="store_true",
        help="with --fd: stage-1 reconstructions of N other validation images instead of samples (what a "
        "perfect base model would score through this decoder; stage-1 runs too)",
    )
    e.add_argument("--steps", dest="base_steps", type=STEPS, help="with --fd: base-model (or prior) sampling steps")
    e.add_argument(
        "--inception-weights",
        metavar="PATH",
        help="with --fd on an image run: a local Inception-v3 weights file for real FID (recognised by its sha256)",
    )
    e.add_argument(
        "--slack",
        action="store_true",
        help='prior slack κ of a stage-2 run trained with loss.base_weighting="elbo": its stage-1 prior\'s rate '
        "bound over this model's bound on the same --n validation latents",
    )
    e.add_argument(
        "--guidance",
        type=_number(0.0, 50.0),
        metavar="G",
        help="with --fd on a class-conditional stage-2 image run: draw each sample for its reference image's "
        "class with guidance scale G (1: conditional, no guidance) and report how often the shapes classifier "
        "agrees with the class",
    )
    e.add_argument("--seed", type=SEED, default=0, help="with --fd: the first sample's seed")
    e.add_argument("--no-record", dest="record", action="store_false", help="do not store the result on the checkpoint")
    e.add_argument("--json", action="store_true")

    st = sub.add_parser("study", help="the paper's tables at small scale: train a grid of runs, write a report")
    st.add_argument("--quick", action="store_true", help="the small grid (about 15 minutes on 2 CPU cores)")
    _budget(st)
    st.add_argument("--stage2-steps", type=STEPS, help="stage-2 steps per run (default: the grid's)")
    st.add_argument("--out", type=_out_file, default="docs/results.md", help="the Markdown report")
    st.add_argument("--preset", default="shapes-32")
    st.add_argument(
        "--lf", dest="loss_factors", type=_number(0.0, above=True), action="append", help="a loss factor (repeatable)"
    )
    st.add_argument(
        "--baseline-lf",
        type=_number(0.0, above=True),
        help="the ablations' loss factor (default 3; the quick grid's 10)",
    )
    st.add_argument("--threads", type=STEP, default=0, help="CPU threads for every run (0: torch's default)")
    st.add_argument("--tag", help="run-name prefix (default: study or study-quick)")
    st.add_argument("--eval-n", type=COUNT, help="validation images for PSNR/SSIM/bits")
    st.add_argument("--fd", dest="fd_n", type=_whole(2), help="samples for FD-shapes")
    st.add_argument("--decoder-steps", type=DECODER_STEPS)
    st.add_argument("--base-steps", type=STEPS)
    st.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    st.add_argument("--dry-run", action="store_true", help="print the grid and its commands; train nothing")
    st.add_argument("--json", action="store_true")

    pr = sub.add_parser("presets", help="list presets")
    pr.add_argument("--json", action="store_true")

    b = sub.add_parser("bench", help="measure training and sampling speed on this machine")
    b.add_argument("--preset", default="shapes-32")
    b.add_argument("--steps", type=STEPS, default=5)
    b.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    b.add_argument(
        "--compile", action="store_true", help="also train with the transformers compiled (torch.compile) and compare"
    )
    b.add_argument(
        "--peer", action="store_true", help="also time an equally sized diffusers autoencoder (needs [bench] extra)"
    )
    b.add_argument(
        "--app", action="store_true", help="also the app's cold start, its plot redraw and the store's metric reads"
    )
    b.add_argument(
        "--app-points",
        type=_whole(2),
        default=1_000_000,
        metavar="N",
        help="with --app: points per plotted/read series",
    )
    b.add_argument(
        "--quality", action="store_true",
        help="instead: sample quality (FD-shapes) per CPU-minute of training, UL vs a pixel-space UNet and an "
        "SD-style KL autoencoder + latent diffusion (needs [bench] extra)",
    )  # fmt: skip
    b.add_argument(
        "--minutes", type=_number(0, above=True), default=10.0, help="with --quality: CPU-minutes per contender"
    )
    b.add_argument("--samples", type=_whole(2), default=1000, help="with --quality: samples for FD-shapes")
    b.add_argument("--threads", type=_whole(1, 256), default=1, help="with --quality: torch threads")
    b.add_argument(
        "--contenders", default="ul,pixel,ldm", help="with --quality: which of ul, pixel, ldm (comma-separated)"
    )
    b.add_argument(
        "--partial",
        type=_out_file,
        metavar="PATH",
        help="with --quality: rewrite this JSON file after each contender (a stopped run keeps what it measured)",
    )
    b.add_argument("--json", action="store_true")

    ex = sub.add_parser("export", help="write a run's inference bundle (safetensors + JSON)")
    ex.add_argument("run")
    ex.add_argument("--out", type=_out_folder, required=True)
    ex.add_argument("--json", action="store_true")

    doc = sub.add_parser("doctor", help="check the installation")
    doc.add_argument("--json", action="store_true")
    add_ecosystem_parsers(sub)  # encode, metrics, export --format diffusers
    return p


def _launch_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("several GPUs or machines (passed to accelerate launch)")
    g.add_argument("--processes", type=STEP, help="processes (one per GPU) on this machine; 0: one per GPU")
    g.add_argument("--num-machines", type=COUNT)
    g.add_argument("--machine-rank", type=STEP)
    g.add_argument("--main-process-ip")
    g.add_argument("--main-process-port", type=_whole(1, 65535))


def _launch_options(args: argparse.Namespace, cfg_processes: int, device: str) -> LaunchOptions:
    from ul_engine.core.supervisor import LaunchOptions, gpu_count_hint  # lazy: pydantic, psutil

    processes = args.processes if args.processes is not None else cfg_processes
    if processes == 0:
        processes = max(1, gpu_count_hint())
    return LaunchOptions(
        num_processes=processes,
        num_machines=args.num_machines or 1,
        machine_rank=args.machine_rank or 0,
        main_process_ip=args.main_process_ip,
        main_process_port=args.main_process_port,
        mixed_precision="bf16" if device == "cuda" else "no",
    )


def _budget(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--steps", type=STEP)
    g.add_argument("--minutes", type=_number(0.0, above=True))


# ----------------------------------------------------------------------------------------------


def _store(args: argparse.Namespace) -> Store:
    from ul_engine.store import Store  # lazy: SQLAlchemy

    return Store.open(args.home)  # None: $UL_HOME, else the platform's data folder


def _emit_json(obj: dict[str, Any]) -> None:
    """Every `--json` result goes through here: strict JSON, non-finite numbers as null with a reason."""
    sys.stdout.write(json_output.dumps(obj) + "\n")
    sys.stdout.flush()


def cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    from ul_engine.core.config import resolve, validate  # lazy: pydantic

    overrides = list(args.overrides)
    if args.device:
        overrides.append(f'train.device="{args.device}"')
    if (args.steps is not None and args.steps < 0) or (args.minutes is not None and args.minutes <= 0):
        raise ULError("--steps must be ≥ 0 and --minutes > 0")
    if args.stage == 1:
        cfg = resolve(args.preset, overrides, stage=1)
        if args.steps is not None:
            cfg = validate({**cfg.to_dict(), "train": {**cfg.to_dict()["train"], "steps": args.steps}})
        if args.minutes is not None and args.steps is None:
            cfg = validate({**cfg.to_dict(), "train": {**cfg.to_dict()["train"], "minutes": args.minutes, "steps": 0}})
        if args.dry_run:
            return _dry_run(cfg.to_dict(), args)
        store = _store(args)
        run = store.create_run(
            name=args.name, stage=1, preset=args.preset, config=cfg.to_dict(), total_steps=cfg.train.steps or None
        )
    else:
        run = _create_stage2(args, overrides)
        if isinstance(run, dict):
            return run
        store = _store(args)
    if args.queue:
        job = store.enqueue(
            run.id, device=run.config["train"]["device"] if run.config["train"]["device"] != "auto" else "cpu"
        )
        return {"run": run.id, "stage": run.stage, "status": "queued", "step": 0, "losses": {}, "job": job.id}
    launch = _launch_options(args, run.config["train"].get("num_processes", 1), run.config["train"]["device"])
    if launch.distributed:
        return _train_in_worker(store, run.id, args, launch)
    return _train(store, run.id, args)


def _train_in_worker(
    store: Store, run_id: int, args: argparse.Namespace, launch: LaunchOptions, **budget: Any
) -> dict[str, Any]:
    """Several processes: the worker runs under `accelerate launch`; this process waits and reports."""
    from ul_engine.core.supervisor import start_worker, stop_run, worker_command  # lazy: pydantic, psutil

    worker = start_worker(worker_command(store.home, run_id, launch=launch, **budget), run_id)
    try:
        code = worker.wait()
    except KeyboardInterrupt:
        stop_run(store, run_id, worker=worker)
        code = worker.wait()
    run = store.get_run(run_id)
    if code != 0 and run.status not in ("completed", "stopped"):
        tail = "\n".join(list(worker.stderr_tail)[-5:])
        raise ULError(f"the training worker exited with code {code}: {run.error or tail}")
    summary = store.summary(run_id)
    losses = {k: v["last"] for k, v in summary.items() if k.startswith(("loss/", "rate/"))}
    return {"run": run.id, "stage": run.stage, "status": run.status, "step": run.step, "losses": losses}


def _dry_run(config: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """`ul train --dry-run`: the resolved config, printed as JSON in both modes (the --json one wraps it)."""
    if not args.json:
        print(json_output.dumps(config, indent=2))
    return {"config": config}


def _create_stage2(args: argparse.Namespace, overrides: list[str]) -> Any:
    from ul_engine.inference.loading import create_stage2_run, stage2_config  # lazy: torch

    if not args.from_run:
        raise ULError("--stage 2 needs --from-run RUN (the stage-1 run whose latents it models)")
    store = _store(args)
    cfg, ckpt = stage2_config(
        store, args.from_run, args.preset, overrides, steps=args.steps, minutes=args.minutes, checkpoint=args.checkpoint
    )
    if args.dry_run:
        return _dry_run(cfg.to_dict(), args)
    return create_stage2_run(store, args.name, args.preset, cfg, ckpt)


def _train(store: Store, run_id: int, args: argparse.Namespace, *, steps: int | None = None) -> dict[str, Any]:
    from ul_engine.train.runner import train_run  # lazy: torch

    quiet = args.json or not sys.stdout.isatty()

    def emit(event: dict[str, Any]) -> None:
        if not quiet and event.get("event") in ("status", "checkpoint", "error"):
            print(f"[run {event['run']}] " + ", ".join(f"{k}={v}" for k, v in event.items() if k != "run"))

    result = train_run(store, run_id, steps=steps, minutes=None, emit=emit, progress=not args.json)
    return result.to_json()


def cmd_resume(args: argparse.Namespace) -> dict[str, Any]:
    from ul_engine.train.runner import train_run  # lazy: torch

    store = _store(args)
    run = store.get_run(args.run)
    if run.status in ("running", "paused", "stopping"):
        store.mark_stale_runs()  # a dead worker on this machine: interrupted at once, resumable below
        run = store.get_run(run.id)
        if run.status == "paused" and store.request(run.id, "resume", session=run.session):
            return {"run": run.id, "stage": run.stage, "status": "resuming", "step": run.step, "losses": {}}
    # train_run claims the run with one compare-and-set: of two resumes at once, one trains, one exits 2.
    launch = _launch_options(args, run.config["train"].get("num_processes", 1), run.config["train"]["device"])
    if launch.distributed:
        return _train_in_worker(store, run.id, args, launch, steps=args.steps, minutes=args.minutes)
    result = train_run(store, run.id, steps=args.steps, minutes=args.minutes, progress=not args.json)
    return result.to_json()


def cmd_pause(args: argparse.Namespace) -> dict[str, Any]:
    store = _store(args)
    run = store.get_run(args.run)
    if run.status != "running":
        raise ULError(f"run {run.name} is {run.status}; only a running run can be paused")
    store.request(run.id, "pause")
    return {"run": run.id, "status": "pausing"}


def cmd_stop(args: argparse.Namespace) -> dict[str, Any]:
    from ul_engine.core.supervisor import StopLadder, stop_run  # lazy: pydantic, psutil

    store = _store(args)
    run = store.get_run(args.run)
    if run.status == "queued":
        for job in store.list_jobs("queued", run_id=run.id):
            store.cancel_job(job.id)
        with contextlib.suppress(RunStateError):  # still queued without a job: leave the queue all the same
            store.transition(run.id, "stopped", expect="queued")
        return {"run": run.id, "status": store.get_run(run.id).status, "how": "dequeued"}
    if run.status not in ("running", "paused", "stopping"):
        raise ULError(f"run {run.name} is {run.status}; nothing to stop")
    # a dead worker: the run becomes interrupted, resumable
    how = stop_run(store, run.id, ladder=StopLadder(grace_s=args.grace))
    return {"run": run.id, "status": store.get_run(run.id).status, "how": how}


def cmd_delete(args: argparse.Namespace) -> dict[str, Any]:
    store = _store(args)
    run = store.get_run(args.run)
    if run.status in ("running", "paused", "stopping"):
        raise ULError(f"run {run.name} is {run.status}; stop it before deleting")
    if not args.yes:
        if not sys.stdin.isatty():
            raise ULError("delete asks for confirmation; pass --yes when not at a terminal")
        answer = input(f"Delete run {run.name} (id {run.id}) with its checkpoints and metrics? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            return {"run": run.id, "deleted": False}
    store.delete_run(run.id, remove_files=True)
    if run.status == "shipped":  # the demo model: its bundle stays; the app stops bringing it back
        from ul_engine.core.demo import dismiss  # lazy: pydantic

        dismiss(store.home)
    return {"run": run.id, "deleted": True}


def cmd_queue(args: argparse.Namespace) -> dict[str, Any]:
    from ul_engine.core.supervisor import run_queue  # lazy: pydantic, psutil

    store = _store(args)
    if args.action == "add":
        if not args.target:
            raise ULError("queue add needs a run")
        job = store.enqueue(store.get_run(args.target).id, device=args.device)
        return {"job": job.id, "run": job.run_id, "position": job.position}
    if args.action in ("move", "cancel"):
        if args.target is None or not args.target.isdigit():
            raise ULError(f"queue {args.action} needs a job id")
        if args.action == "move":
            if args.position is None:
                raise ULError("queue move needs the new position")
            store.move_job(int(args.target), args.position)
        elif not store.cancel_job(int(args.target)):
            raise ULError(f"job {args.target} is not queued")
    if args.action == "run":
        done = run_queue(store, args.device)
        return {"ran": done, "jobs": [_job_json(j) for j in store.list_jobs()]}
    jobs = [_job_json(j) for j in store.list_jobs()]
    if not args.json:
        for j in jobs:
            print(f"{j['id']:>4}  run {j['run']:<5} {j['status']:<10} pos {j['position']:<4} {j['device']}")
    return {"jobs": jobs}


def _job_json(job: Any) -> dict[str, Any]:
    return {
        "id": job.id, "run": job.run_id, "kind": job.kind, "status": job.status, "position": job.position,
        "device": job.device, "attempts": job.attempts, "exit_code": job.exit_code, "error": job.error,
    }  # fmt: skip


def cmd_runs(args: argparse.Namespace) -> dict[str, Any]:
    store = _store(args)
    if not store.read_only:  # a read-only data folder is listed as it is
        store.mark_stale_runs()
    rows = []
    for r in store.list_runs():
        summary = store.summary(r.id)
        rows.append(
            {
                "id": r.id,
                "name": r.name,
                "stage": r.stage,
                "status": r.status,
                "step": r.step,
                "total_steps": r.total_steps,
                "preset": r.preset,
                "created": r.created_at.isoformat() if r.created_at else None,
                "loss": (summary.get("loss/total") or {}).get("last"),
                "bits_per_pixel": (summary.get("rate/bits_per_pixel") or {}).get("last"),
                "parent_run": r.parent_run_id,
                "error": r.error,
            }
        )
    if not args.json:
        print(f"{'id':>4}  {'name':<24} {'stage':>5} {'status':<12} {'step':>8}  {'loss':>10}  {'bits/px':>8}")
        for row in rows:
            loss = f"{row['loss']:.4g}" if row["loss"] is not None else "-"
            bpp = f"{row['bits_per_pixel']:.4f}" if row["bits_per_pixel"] is not None else "-"
            print(
                f"{row['id']:>4}  {row['name']:<24} {row['stage']:>5} {row['status']:<12} {row['step']:>8}  "
                f"{loss:>10}  {bpp:>8}"
            )
    return {"runs": rows}


def cmd_presets(args: argparse.Namespace) -> dict[str, Any]:
    from ul_engine.core.config import list_presets, load_preset  # lazy: pydantic

    items = [{"name": n, "description": load_preset(n).get("description", "")} for n in list_presets()]
    if not args.json:
        for it in items:
            print(f"{it['name']:<14} {it['description']}")
    return {"presets": items}


def cmd_reconstruct(args: argparse.Namespace) -> dict[str, Any]:
    from ul_engine.core.media import is_video_path  # lazy: Pillow
    from ul_engine.inference.files import expand_inputs  # lazy: torch
    from ul_engine.inference.loading import load_run  # lazy: torch
    from ul_engine.inference.reconstruct import Reconstructor, flat_result, reconstruct_many  # lazy: torch

    store = _store(args)
    files = expand_inputs(args.inputs)
    if files and all(is_video_path(f) for f in files):
        return _reconstruct_videos(store, args, files)
    if any(is_video_path(f) for f in files):
        raise ULError("give either videos or images to one `ul reconstruct`, not both")
    if not files:
        raise ULError(f"no input images found in {', '.join(args.inputs)}")
    main = Reconstructor(load_run(store, args.run, step=args.checkpoint), store)
    other = None
    if args.compare:
        other = Reconstructor(load_run(store, args.compare, step=args.compare_checkpoint), store, label="B")
    params = main.default_params(
        decoder_steps=args.decoder_steps, sampler=args.sampler, seed=args.seed, samples=args.samples
    )

    def line(r: dict[str, Any]) -> str:
        if r.get("error"):
            return _failure_line(r["input"], r["error"])
        text = (f"{r['input']} -> {r['output']}  PSNR {r['psnr']:.2f} dB  "
                f"{r['bits_per_pixel']:.4f} bits/px  {r['bits_per_dim']:.3f} bits/dim")  # fmt: skip
        if r.get("mean"):
            text += f"  mean {r['mean']}  std map {r['std_map']} (mean std {r['std_mean']:.2f} levels)"
        return text

    results: list[dict[str, Any]] = []

    def report(_done: int, entry: dict[str, Any]) -> None:
        r = flat_result(entry)
        if entry.get("compare") is not None:
            r["compare"] = flat_result(entry["compare"])
        results.append(r)
        if not args.json:
            print(line(r))
            if "compare" in r:
                print(f"  {r['compare']['run']}@{r['compare']['checkpoint_step']}: {line(r['compare'])}")

    steps = _StepProgress(args.json)
    reconstruct_many(main, files, params, compare=other, out_dir=Path(args.out), progress=report, step_progress=steps)
    steps.close()
    failed = sum(1 for r in results if r.get("error") or (r.get("compare") or {}).get("error"))
    if failed:
        sys.stderr.write(f"ul: error: {failed} of {len(results)} inputs could not be reconstructed\n")
    return {"results": results, EXIT_KEY: EXIT_USER_ERROR if failed else 0}


class _StepProgress:
    """Progress inside one input, so a large image never looks hung: after its first second (UL_PROGRESS_AFTER_S),
    with `--json` a JSON line on stderr every second ({"event": "progress", "input", "done", "total", "what",
    "elapsed_s", "eta_s"}), else one line on stderr (rewritten in place on a terminal, every 10 s otherwise).
    The expected time left is the mean time per unit after the encode times the units left."""

    def __init__(self, json_mode: bool) -> None:
        self.json_mode, self.tty = json_mode, sys.stderr.isatty()
        self.interval = 1.0 if json_mode else (0.5 if self.tty else 10.0)
        self.after = float(os.environ.get("UL_PROGRESS_AFTER_S") or 1.0)  # 0: report every unit (tests)
        if self.after <= 0:
            self.interval = 0.0
        self.clock = time.monotonic
        self.input: str | None = None
        self.started = self.first_done = self.last = 0.0
        self.pending_newline = False

    def __call__(self, path: Path | str, done: int, total: int, what: str) -> None:
        now = self.clock()
        if str(path) != self.input or done == 0:
            self.close()
            self.input, self.started, self.first_done, self.last = str(path), now, 0.0, 0.0
        if done == 1:
            self.first_done = now
        elapsed = now - self.started
        if done == 0 or elapsed < self.after or now - self.last < self.interval:
            return
        self.last = now
        eta = None
        if done >= 2 and self.first_done:
            eta = (now - self.first_done) / (done - 1) * (total - done)
        if self.json_mode:
            event = {"event": "progress", "input": self.input, "done": done, "total": total, "what": what,
                     "elapsed_s": round(elapsed, 1), "eta_s": None if eta is None else round(eta, 1)}  # fmt: skip
            sys.stderr.write(json_output.dumps(event) + "\n")
        else:
            left = "" if eta is None else f", about {_duration(eta)} left"
            text = f"{self.input}: {what} ({done}/{total}, {_duration(elapsed)}{left})"
            sys.stderr.write(f"\r\x1b[K{text}" if self.tty else text + "\n")
            self.pending_newline = self.tty
        sys.stderr.flush()

    def close(self) -> None:
        if self.pending_newline:
            sys.stderr.write("\n")
            self.pending_newline = False


def _json_progress(path: Path) -> tuple[Any, Any]:
    reporter = _StepProgress(json_mode=True)
    return (lambda done, total, what: reporter(path, done, total, what)), reporter.close


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _failure_line(path: str | Path, error: str) -> str:
    """`<path>: error: <reason>`, naming the input once although the reader's message starts with it too."""
    for prefix in (f"{path}: ", f"{Path(path).name}: "):
        if error.startswith(prefix):
            error = error[len(prefix) :]
            break
    return f"{path}: error: {error}"


def _reconstruct_videos(store: Store, args: argparse.Namespace, files: list[Path]) -> dict[str, Any]:
    """Video inputs: per file an MP4 of the frames used, its reconstruction, and per-frame PSNR."""
    from ul_engine.inference.files import terminal_progress  # lazy: torch
    from ul_engine.inference.loading import load_run  # lazy: torch
    from ul_engine.inference.reconstruct import flat_result, reconstruct_clip  # lazy: torch

    loaded = load_run(store, args.run, step=args.checkpoint)
    results: list[dict[str, Any]] = []
    for path in files:
        progress, close = terminal_progress(not args.json)
        if args.json:  # JSON lines on stderr, as for images
            progress, close = _json_progress(path)
        try:
            r = flat_result(reconstruct_clip(loaded, path, Path(args.out), decoder_steps=args.decoder_steps,
                                             seed=args.seed, sampler=args.sampler, max_frames=args.max_frames,
                                             progress=progress))  # fmt: skip
        except ULError as exc:
            if not loaded.cfg.model.time_axis:
                raise
            r = {"input": str(path), "output": None, "error": str(exc)}
        finally:
            close()
        results.append(r)
        if not args.json:
            if r.get("error"):
                print(_failure_line(path, r["error"]))
            else:
                print(f"{path} -> {r['reconstruction']}  {r['frames']} frames  PSNR {r['psnr']:.2f} dB  "
                      f"{r['bits_per_pixel']:.4f} bits/px  {r['bits_per_dim']:.3f} bits/dim")  # fmt: skip
    failed = sum(1 for r in results if r.get("error"))
    if failed:
        sys.stderr.write(f"ul: error: {failed} of {len(results)} inputs could not be reconstructed\n")
    return {"results": results, EXIT_KEY: EXIT_USER_ERROR if failed else 0}


def _is_video_run(store: Store, ref: str) -> bool:
    try:
        return bool(store.get_run(ref).config.get("model", {}).get("time_axis"))
    except ULError:
        return False


def _sample_video(store: Store, args: argparse.Namespace) -> dict[str, Any]:
    from ul_engine.inference.files import terminal_progress  # lazy: torch
    from ul_engine.inference.loading import load_run  # lazy: torch
    from ul_engine.inference.sample import sample_clips  # lazy: torch

    progress, close = terminal_progress(not args.json)
    try:
        loaded = load_run(store, args.run, need_base=True, step=args.checkpoint)
        result = sample_clips(
            store, loaded, args.out, n=args.n, frames=args.frames,
            seed=args.seed, base_steps=args.steps, decoder_steps=args.decoder_steps, sampler=args.sampler,
            context=args.context, context_frames=args.context_frames, fmt=args.video_format, progress=progress,
        )  # fmt: skip
    finally:
        close()
    if not args.json:
        for o in result["outputs"]:
            print(o)
    return result


def cmd_sample(args: argparse.Namespace) -> dict[str, Any]:
    from ul_engine.inference.sample import sample_files  # lazy: torch

    store = _store(args)
    if args.frames is not None or args.context or args.context_frames or _is_video_run(store, args.run):
        return _sample_video(store, args)
    outputs = sample_files(
        store,
        args.run,
        args.out,
        n=args.n,
        step=args.checkpoint,
        seed=args.seed,
        base_steps=args.steps,
        decoder_steps=args.decoder_steps,
        sampler=args.sampler,
        guidance=args.guidance,
        class_label=args.class_label,
        progress=not args.json,
    )
    if not args.json:
        for o in outputs:
            print(o)
    return {"outputs": outputs}


def cmd_interpolate(args: argparse.Namespace) -> dict[str, Any]:
    from ul_engine.inference.latents import interpolate_files  # lazy: torch

    a, b = args.inputs
    result = interpolate_files(
        _store(args), args.run, a, b, args.out, frames=args.frames, mode=args.mode,
        decoder_steps=args.decoder_steps, sampler=args.sampler, seed=args.seed, fps=args.fps,
    )  # fmt: skip
    if not args.json:
        w, h = result["size"]
        print(f"{result['path']}: {result['frames']} frames, {w}×{h}, {result['mode']}")
    return result


def cmd_eval(args: argparse.Namespace) -> dict[str, Any]:
    from ul_engine.eval.evaluate import evaluate_run  # lazy: torch

    store = _store(args)
    if args.slack:
        if args.fd or args.prior_samples or args.reconstructions or args.inception_weights or args.guidance is not None:
            raise ULError(
                "--slack measures the rate bounds only; leave out --fd, --prior-samples, --reconstructions, "
                "--inception-weights, --guidance"
            )
        return _eval_slack(store, args)
    if args.inception_weights and not args.fd:
        raise ULError("--inception-weights needs --fd N (the number of samples to compare)")
    if args.prior_samples and not args.fd:
        raise ULError("--prior-samples needs --fd N")
    result = evaluate_run(
        store,
        args.run,
        n=args.n,
        decoder_steps=args.decoder_steps,
        step=args.checkpoint,
        fd=args.fd,
        prior_samples=args.prior_samples,
        base_steps=args.base_steps,
        inception_weights=args.inception_weights,
        seed=args.seed,
        record=args.record,
        guidance=args.guidance,
        reconstructions=args.reconstructions,
    )
    if not args.json:
        for k, v in result.items():
            if isinstance(v, dict):
                if v.get("value") is None:
                    print(f"{k:>16}: unavailable: {v['reason']}")
                else:
                    print(f"{k:>16}: {v['value']:.4g}  ({v.get('note', '')})")
                if "class_agreement" in v:
                    round_trips = v["samples"] == "stage1_reconstructions"
                    of = "of the round trips" if round_trips else f"at guidance {v['guidance']:g}"
                    print(
                        f"{'class agreement':>16}: {v['class_agreement']:.3f} {of} "
                        f"(the classifier on the real images: {v['class_agreement_real']:.3f})"
                    )
            else:
                print(f"{k:>16}: {v}")
    return result


def _eval_slack(store: Any, args: argparse.Namespace) -> dict[str, Any]:
    from ul_engine.eval.slack import prior_slack  # lazy: torch

    result = prior_slack(store, args.run, count=args.n).to_json()
    if not args.json:
        kappa = result["kappa"]
        print(
            f"{'stage-1 prior':>16}: {result['bound_bits_per_pixel']:.4g} bits/pixel ({result['bound_nats']:.4g} nats)"
        )
        best, nats = result["best_bound_bits_per_pixel"], result["best_bound_nats"]
        print(f"{'ELBO base model':>16}: {best:.4g} bits/pixel ({nats:.4g} nats)")
        print(f"{'κ':>16}: {'–' if kappa is None else f'{kappa:.3f}'}  (over {result['count']} validation latents)")
    return result


def cmd_study(args: argparse.Namespace) -> dict[str, Any]:
    from ul_engine.eval.study.plan import plan_study, reproduce_commands  # lazy: torch
    from ul_engine.eval.study.run import run_study  # lazy: torch

    argv = list(getattr(args, "argv", []))
    argv = argv[argv.index("study") + 1 :] if "study" in argv else argv
    argv = [a for a in argv if a != "--json"]
    plan = plan_study(
        quick=args.quick,
        preset=args.preset,
        steps=args.steps,
        minutes=args.minutes,
        stage2_steps=args.stage2_steps,
        loss_factors=args.loss_factors,
        baseline_lf=args.baseline_lf,
        overrides=args.overrides,
        threads=args.threads,
        tag=args.tag,
        eval_n=args.eval_n,
        fd_n=args.fd_n,
        decoder_steps=args.decoder_steps,
        base_steps=args.base_steps,
        argv=argv,
    )
    if args.dry_run:
        commands = [c for r in plan.runs for c in reproduce_commands(plan, r)]
        if not args.json:
            print("\n".join(commands))
        return {"runs": [r.name for r in plan.runs], "commands": commands}

    def log(line: str) -> None:
        (sys.stderr if args.json else sys.stdout).write(f"[study] {line}\n")

    result = run_study(_store(args), plan, args.out, log=log)
    if not args.json:
        print(f"wrote {result['out']} and {result['assets']}/")
    return result


def cmd_bench(args: argparse.Namespace) -> dict[str, Any]:
    from ul_engine.bench.training import run_bench  # lazy: torch

    if args.quality:
        from ul_engine.bench.quality import quality_comparison  # lazy: torch

        def log(line: str) -> None:  # progress on stderr, with --json too (stdout holds only the JSON)
            print(line, file=sys.stderr, flush=True)

        result = {"quality": quality_comparison(
            args.preset, args.minutes, samples=args.samples, threads=args.threads, overrides=args.overrides,
            contenders=[c.strip() for c in args.contenders.split(",") if c.strip()], log=log, partial=args.partial,
        )}  # fmt: skip
        if not args.json:
            from ul_engine.bench.quality import describe  # lazy: torch

            print("\n".join(describe(result)))
        return result
    if args.peer:
        from ul_engine.bench.peer import require_diffusers  # lazy: torch

        require_diffusers()  # say so before minutes of benchmarking, not after
    if args.app_points < 2:
        raise ULError("--app-points must be at least 2")
    result = run_bench(args.preset, steps=args.steps, overrides=args.overrides, compile=args.compile, peer=args.peer)
    if args.app:
        result["metric_read"] = ui_bench.metric_read_figures(args.app_points)
        result["app"] = ui_bench.app_figures(args.app_points)
    if not args.json:
        print(json_output.dumps(result, indent=2))
        for stage in ("stage1", "stage2"):
            if "compile" in result:
                c = result["compile"][stage]
                print(f"compile {stage}: {c['eager_images_per_s']:.1f} → {c['compiled_images_per_s']:.1f} images/s "
                      f"({c['speedup']:.2f}×; compiling took {c['compile_seconds']:.0f} s)")  # fmt: skip
        if "peer" in result:
            p = result["peer"]
            print(f"peer: ours {p['ours_train_images_per_s']:.1f} vs peer {p['peer_train_images_per_s']:.1f} "
                  f"training images/s: ratio {p['ratio']:.2f} (parameters {p['parameters']['ours']:,} vs "
                  f"{p['parameters']['peer']:,})")  # fmt: skip
        if args.app:
            print("\n".join(ui_bench.describe(result)))
    return result


def cmd_export(args: argparse.Namespace) -> dict[str, Any]:
    from ul_engine.train.runner import export_run  # lazy: torch

    if args.export_format == "diffusers":
        return cmd_export_diffusers(args)
    if args.checkpoint is not None:
        raise ULError("--checkpoint is for --format diffusers; the bundle is the run's latest exported model")
    store = _store(args)
    files = export_run(store, args.run, args.out)
    if not args.json:
        for f in files:
            print(f)
    return {"out": str(args.out), "files": [str(f) for f in files]}


def cmd_doctor(args: argparse.Namespace) -> dict[str, Any]:
    report = diagnose(args.home)
    if not args.json:
        for k, v in report.items():
            print(f"{k:>18}: {v}")
    return report


COMMANDS = {
    "train": cmd_train,
    "resume": cmd_resume,
    "runs": cmd_runs,
    "reconstruct": cmd_reconstruct,
    "sample": cmd_sample,
    "eval": cmd_eval,
    "study": cmd_study,
    "interpolate": cmd_interpolate,
    "presets": cmd_presets,
    "bench": cmd_bench,
    "export": cmd_export,
    "pause": cmd_pause,
    "stop": cmd_stop,
    "delete": cmd_delete,
    "queue": cmd_queue,
    "doctor": cmd_doctor,
}
COMMANDS.update(ECOSYSTEM_COMMANDS)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(argv) if argv is not None else sys.argv[1:]
    _Parser.json_errors = "--json" in argv
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # a usage error (already reported), --help or --version: the same code as a return
        return exc.code if isinstance(exc.code, int) else EXIT_USER_ERROR
    args.argv = argv
    try:
        result = COMMANDS[args.command](args)
    except ULError as exc:
        sys.stderr.write(f"ul: error: {exc}\n")
        if getattr(args, "json", False):
            _emit_json({"error": str(exc)})
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("ul: interrupted\n")
        return 130
    code = int(result.pop(EXIT_KEY, 0) or 0)
    if getattr(args, "json", False):
        _emit_json(result)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
