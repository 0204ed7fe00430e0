"""A run in other people's tools, end to end on a smoke run trained once for this module: `ul encode` (shards,
index, stats, resume, bad files, --noisy), stage 2 from the encoded folder (`data.kind = "latents"`), and
`ul export --format diffusers` loaded offline with `ULPipeline.from_pretrained` (same images as `ul reconstruct`,
same samples as `ul sample`)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from ul_testkit import ul_process as ul

from ul_engine import weights
from ul_engine.cli.main import main as ul_main
from ul_engine.store import Store

ROOT = Path(__file__).resolve().parents[2]


def ul_json(home: Path, *args: str) -> dict:
    """`ul … --json` in this process (no second torch start-up); the one JSON object it prints."""
    import contextlib
    import io as _io

    buf = _io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = ul_main(["--home", str(home), *args, "--json"])
    assert code == 0, (args, buf.getvalue())
    return json.loads(buf.getvalue().strip().splitlines()[-1])


def save_noise(path: Path, h: int, w: int, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A smoke stage-1 run `s1` with checkpoints at steps 5 and 10 (the tests check plumbing, not quality)."""
    home = tmp_path_factory.mktemp("ul-home")
    ul_json(home, "train", "--preset", "smoke", "--name", "s1", "--steps", "10", "--set", "train.checkpoint_every=5")
    return home


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """7 images of several sizes (two in a subfolder) and one file that is not an image."""
    root = tmp_path_factory.mktemp("images")
    for i in range(7):
        save_noise(root / ("sub" if i % 3 == 0 else "") / f"img{i}.png", 16 + 2 * i, 24, seed=i)
    (root / "broken.png").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def encoded(home: Path, images: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("latents")
    result = ul_json(home, "encode", "--run", "s1", str(images), "--out", str(out), "--shard-size", "3",
                     "--batch", "2")  # fmt: skip
    return out, result


def test_encode_writes_shards_index_and_stats(home: Path, images: Path, encoded: tuple[Path, dict]) -> None:
    from ul_engine.data import fit_square, load_image_rgb
    from ul_engine.data.loader import to_model_tensor
    from ul_engine.inference.loading import load_run

    out, result = encoded
    assert result["count"] == 7 and result["shards"] == 3 and result["latent"] == "z_clean"
    assert result["skipped"] == [{"path": "broken.png", "reason": result["skipped"][0]["reason"]}]
    assert "not an image" in result["skipped"][0]["reason"]
    names, zs, labels = [], [], []
    for k in range(3):
        tensors, _ = weights.load_tensors(out / f"latents-{k:05d}.safetensors")
        index = json.loads((out / f"latents-{k:05d}.json").read_text())
        assert tensors["z"].dtype == torch.float32 and tensors["z"].shape[1:] == (4, 4, 4)
        assert tensors["z"].shape[0] == index["count"] == len(index["items"]) == tensors["labels"].shape[0]
        names += [item["path"] for item in index["items"]]
        zs.append(tensors["z"])
        labels.append(tensors["labels"])
    assert names == sorted(names) and "sub/img0.png" in names and "img1.png" in names and len(names) == 7
    z = torch.cat(zs)

    store = Store.open(home)
    try:
        loaded = load_run(store, "s1")
        latest = max(store.list_checkpoints(loaded.run.id), key=lambda c: c.step)
    finally:
        store.close()
    # the latents are the run's encoder on the centre-cropped image, as training sees it
    first = fit_square(load_image_rgb(images / names[0]).array, 16, "center")
    with torch.no_grad():
        expected = loaded.stage1.encode(to_model_tensor(first[None]))
    torch.testing.assert_close(z[0], expected[0])

    stats = json.loads((out / "latent_stats.json").read_text())
    assert stats["shape"] == [4, 4, 4] and stats["count"] == 7 and stats["latent"] == "z_clean"
    assert stats["checkpoint"] == {"step": 10, "sha256": latest.sha256}
    assert stats["run"]["name"] == "s1"
    flat = z.double().transpose(0, 1).reshape(4, -1)
    np.testing.assert_allclose(stats["channel_mean"], flat.mean(1).numpy(), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(stats["channel_std"], flat.std(1, unbiased=False).numpy(), rtol=1e-6, atol=1e-9)
    lam = stats["latent_logsnr_max"]
    assert lam == 5.0
    assert math.isclose(stats["alpha0"] ** 2, 1 / (1 + math.exp(-lam))) and math.isclose(
        stats["sigma0"] ** 2, 1 / (1 + math.exp(lam))
    )
    assert "z0 = alpha0 * z_clean + sigma0 * eps" in stats["z0_from_z_clean"]
    assert stats["skipped"][0]["path"] == "broken.png"


def test_noisy_latents_follow_the_recipe_in_the_stats(home: Path, images: Path, encoded, tmp_path: Path) -> None:
    clean_dir, _ = encoded
    result = ul_json(home, "encode", "--run", "s1", str(images), "--out", str(tmp_path), "--noisy", "--seed", "5",
                     "--dtype", "fp16", "--shard-size", "3")  # fmt: skip
    assert result["latent"] == "z0" and result["dtype"] == "fp16"
    stats = json.loads((tmp_path / "latent_stats.json").read_text())
    assert stats["latent"] == "z0" and "manual_seed(5 + i)" in stats["noise"]
    clean, _ = weights.load_tensors(clean_dir / "latents-00001.safetensors")
    noisy, _ = weights.load_tensors(tmp_path / "latents-00001.safetensors")
    index = json.loads((tmp_path / "latents-00001.json").read_text())
    assert noisy["z"].dtype == torch.float16
    # item i counts every file in sorted order (the unreadable one included): recompute z0 from z_clean
    files = ["broken.png", *sorted(p.relative_to(images).as_posix() for p in images.rglob("img*.png"))]
    files.sort()
    for row, item in enumerate(index["items"]):
        i = files.index(item["path"])
        eps = torch.randn((4, 4, 4), generator=torch.Generator().manual_seed(5 + i))
        z0 = stats["alpha0"] * clean["z"][row] + stats["sigma0"] * eps
        torch.testing.assert_close(noisy["z"][row].float(), z0, atol=2e-3, rtol=2e-3)  # fp16 storage


def test_encode_resumes_and_redoes_only_unfinished_shards(home: Path, images: Path, tmp_path: Path) -> None:
    args = ("encode", "--run", "s1", str(images), "--out", str(tmp_path), "--shard-size", "3")
    assert ul_json(home, *args)["reused_shards"] == 0
    kept = (tmp_path / "latents-00000.safetensors").stat().st_mtime_ns
    (tmp_path / "latents-00002.json").unlink()  # as if interrupted after shard 2's tensors, before its index
    (tmp_path / "latents-00001.safetensors").unlink()  # as if interrupted while writing shard 1
    again = ul_json(home, *args)
    assert again["reused_shards"] == 1 and again["count"] == 7
    assert (tmp_path / "latents-00000.safetensors").stat().st_mtime_ns == kept
    assert (tmp_path / "latents-00001.json").is_file() and (tmp_path / "latents-00002.json").is_file()
    other = ul_json(home, *args, "--checkpoint", "5")  # another checkpoint: nothing of the old shards fits
    assert other["reused_shards"] == 0
    assert json.loads((tmp_path / "latent_stats.json").read_text())["checkpoint"]["step"] == 5
    assert not list(tmp_path.glob(".*.tmp")), "no temp files are left behind"


def ul_refused(capsys: pytest.CaptureFixture[str], home: Path, *args: str) -> str:
    """`ul … --json` in this process must exit 2 with one stderr line and a JSON error; returns that line."""
    capsys.readouterr()
    code = ul_main(["--home", str(home), *args, "--json"])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2 and len(lines) == 1, captured.err
    assert json.loads(captured.out.strip().splitlines()[-1])["error"] in lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["encode", "--run", "nope", "IMAGES", "--out", "OUT"], "nope"),
        (["encode", "--run", "s1", "IMAGES", "--out", "OUT", "--batch", "0"], "--batch"),
        (["encode", "--run", "s1", "EMPTY", "--out", "OUT"], "no readable images"),
        (["encode", "--run", "s1", "IMAGES", "--out", "AFILE"], "is a file"),
        (["export", "s1", "--format", "diffusers", "--out", "OUT", "--checkpoint", "7"], "no checkpoint at step 7"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, home: Path, images: Path, tmp_path: Path, args: list[str],
                                          needle: str) -> None:  # fmt: skip
    (tmp_path / "empty").mkdir()
    (tmp_path / "a-file").write_text("x")
    swap = {"OUT": str(tmp_path / "out"), "IMAGES": str(images), "EMPTY": str(tmp_path / "empty"),
            "AFILE": str(tmp_path / "a-file")}  # fmt: skip
    assert needle in ul_refused(capsys, home, *[swap.get(a, a) for a in args])


def test_bad_input_exits_2_from_a_real_process(home: Path, tmp_path: Path) -> None:
    proc = ul(home, "encode", "--run", "s1", str(tmp_path / "missing"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"ul: error: {tmp_path / 'missing'} is not a folder (give an image or video folder)"
    ]
    proc = ul(home, "export", "s1", "--format", "onnx", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "invalid choice" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def stage2(home: Path, encoded) -> str:
    """A stage-2 run trained from the encoded folder (3 steps)."""
    out, _ = encoded
    result = ul_json(home, "train", "--stage", "2", "--from-run", "s1", "--preset", "smoke", "--name", "from-latents",
                     "--steps", "3", "--set", "data.kind=latents", "--set", f"data.path={out}")  # fmt: skip
    assert result["status"] == "completed" and result["step"] == 3
    return "from-latents"


def test_stage2_trains_from_the_encoded_folder(home: Path, encoded, stage2: str, tmp_path: Path) -> None:
    out, _ = encoded
    store = Store.open(home)
    try:
        run = store.get_run(stage2)
        run_dir = store.run_dir(run.id)
    finally:
        store.close()
    assert run.config["data"] == {**run.config["data"], "kind": "latents", "path": str(out)}
    assert not list(run_dir.glob("latents-*.safetensors")), "the folder feeds stage 2: nothing is encoded again"
    samples = ul_json(home, "sample", "--run", stage2, "--n", "2", "--out", str(tmp_path / "samples"))
    assert len(samples["outputs"]) == 2  # the frozen stage-1 decoder turns its latents into images
    # encoding with the stage-2 run uses its frozen stage-1 encoder, and the stats name that checkpoint
    again = tmp_path / "again"
    ul_json(home, "encode", "--run", stage2, str(json.loads((out / "latent_stats.json").read_text())["source"]
            ["folder"]), "--out", str(again))  # fmt: skip
    first, second = (json.loads((d / "latent_stats.json").read_text()) for d in (out, again))
    assert second["checkpoint"] == first["checkpoint"] and second["run"]["name"] == "s1"
    shards = [weights.load_tensors(out / shard["file"])[0]["z"] for shard in first["shards"]]
    torch.testing.assert_close(weights.load_tensors(again / "latents-00000.safetensors")[0]["z"], torch.cat(shards))


def test_stage2_refuses_latents_it_cannot_use(capsys, home: Path, images: Path, encoded, tmp_path: Path) -> None:
    out, _ = encoded
    base = ["train", "--stage", "2", "--from-run", "s1", "--preset", "smoke", "--steps", "1", "--set",
            "data.kind=latents"]  # fmt: skip
    runs = len(ul_json(home, "runs")["runs"])
    line = ul_refused(capsys, home, *base, "--checkpoint", "5", "--set", f"data.path={out}")
    assert "was encoded by checkpoint" in line
    noisy = tmp_path / "noisy"
    ul_json(home, "encode", "--run", "s1", str(images), "--out", str(noisy), "--noisy")
    assert "noisy z0" in ul_refused(capsys, home, *base, "--set", f"data.path={noisy}")
    stats = json.loads((noisy / "latent_stats.json").read_text())
    (noisy / "latent_stats.json").write_text(json.dumps({**stats, "latent": "z_clean", "shape": [8, 4, 4]}))
    assert "shaped [8, 4, 4]" in ul_refused(capsys, home, *base, "--set", f"data.path={noisy}")
    assert "not a folder" in ul_refused(capsys, home, *base, "--set", f"data.path={tmp_path / 'nothing'}")
    line = ul_refused(capsys, home, "train", "--preset", "smoke", "--steps", "1", "--set", "data.kind=latents",
                      "--set", f"data.path={out}")  # fmt: skip
    assert "stage 2 only" in line
    assert len(ul_json(home, "runs")["runs"]) == runs, "a refused config creates no run"


def test_encode_a_video_folder(tmp_path: Path) -> None:
    from ul_engine.core import video_io

    home = tmp_path / "home"
    ul_json(home, "train", "--preset", "bouncing-smoke", "--name", "v1", "--steps", "1")
    clips = tmp_path / "clips"
    rng = np.random.default_rng(0)
    for i, frames in enumerate((9, 20)):  # 1 and 2 clips of 8 frames
        video_io.write_mp4(clips / f"c{i}.mp4", [rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
                                                 for _ in range(frames)], fps=8, min_side=1)  # fmt: skip
    (clips / "cut.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    result = ul_json(home, "encode", "--run", "v1", str(clips), "--out", str(tmp_path / "out"))
    assert result["count"] == 3 and result["shape"] == [4, 4, 4, 4]
    assert [s["path"] for s in result["skipped"]] == [str(clips / "cut.mp4")] or "cut.mp4" in json.dumps(
        result["skipped"]
    )
    tensors, _ = weights.load_tensors(tmp_path / "out" / "latents-00000.safetensors")
    assert tensors["z"].shape == (3, 4, 4, 4, 4)
    index = json.loads((tmp_path / "out" / "latents-00000.json").read_text())
    assert [(i["path"], i["start_frame"]) for i in index["items"]] == [("c0.mp4", 0), ("c1.mp4", 0), ("c1.mp4", 8)]


# ---------------------------------------------------------------------------------------------------------
# diffusers

CHECK = r"""
import json, sys
import numpy as np
from PIL import Image
from ul_engine.ecosystem.diffusers_pipeline import ULPipeline
folder, image, seed, steps, sampler = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
pipe = ULPipeline.from_pretrained(folder)
x = np.asarray(Image.open(image).convert("RGB"))
z0 = pipe.encode(x[None], seeds=[seed])
recon = pipe.decode(z0, steps=steps, sampler=sampler, seeds=[seed + 1], output_type="np")[0]
Image.fromarray(recon).save(sys.argv[6])
out = {"z0_shape": list(z0.shape), "has_base": pipe.base is not None}
if pipe.base is not None:
    samples = pipe.sample(2, steps=2, decoder_steps=2, seed=11)
    np.save(sys.argv[6] + ".samples.npy", samples)
print(json.dumps(out))
"""

OFFLINE = {"HF_HUB_OFFLINE": "1", "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}


def test_diffusers_export_reconstructs_like_ul_reconstruct(home: Path, tmp_path: Path) -> None:
    sampler = "ancestral"  # fresh noise every step: the decoder seeds must match too
    image = save_noise(tmp_path / "photo.png", 16, 24, seed=3)
    recon = ul_json(home, "reconstruct", "--run", "s1", str(image), "--seed", "7", "--decoder-steps", "3",
                    "--sampler", sampler, "--out", str(tmp_path / "cli"))["results"][0]  # fmt: skip
    exported = ul_json(home, "export", "s1", "--format", "diffusers", "--out", str(tmp_path / "hf"))
    assert exported["components"] == ["decoder", "encoder", "prior"] and exported["checkpoint_step"] == 10
    index = json.loads((tmp_path / "hf" / "model_index.json").read_text())
    assert index["_class_name"] == "ULPipeline" and index["base"] == [None, None]
    config = json.loads((tmp_path / "hf" / "decoder" / "config.json").read_text())
    assert config["ul_config"]["model"]["latent_channels"] == 4
    assert (tmp_path / "hf" / "decoder" / "diffusion_pytorch_model.safetensors").is_file()
    proc = subprocess.run(
        [sys.executable, "-c", CHECK, str(tmp_path / "hf"), str(image), "7", "3", sampler, str(tmp_path / "p.png")],
        capture_output=True, text=True, timeout=300, env={**os.environ, **OFFLINE}, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"z0_shape": [1, 4, 4, 6], "has_base": False}
    ours = np.asarray(Image.open(recon["output"]).convert("RGB")).astype(int)
    theirs = np.asarray(Image.open(tmp_path / "p.png").convert("RGB")).astype(int)
    assert ours.shape == theirs.shape == (16, 24, 3)
    # the same float ops: equal, up to a rare 8-bit rounding flip where thread counts reorder a float sum
    assert np.abs(ours - theirs).max() <= 1 and (ours != theirs).mean() < 0.01


def test_diffusers_export_of_a_stage2_run_samples_like_ul_sample(home: Path, stage2: str, tmp_path: Path) -> None:
    ul_json(home, "export", stage2, "--format", "diffusers", "--out", str(tmp_path / "hf"))
    assert {p.name for p in (tmp_path / "hf").iterdir()} == {"encoder", "prior", "decoder", "base", "model_index.json"}
    image = save_noise(tmp_path / "photo.png", 16, 16, seed=4)
    proc = subprocess.run(
        [sys.executable, "-c", CHECK, str(tmp_path / "hf"), str(image), "1", "2", "ddim", str(tmp_path / "p.png")],
        capture_output=True, text=True, timeout=300, env={**os.environ, **OFFLINE}, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["has_base"] is True
    cli = ul_json(home, "sample", "--run", stage2, "--n", "2", "--seed", "11", "--steps", "2", "--decoder-steps", "2",
                  "--out", str(tmp_path / "cli"))["outputs"]  # fmt: skip
    ours = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in cli]).astype(int)
    theirs = np.load(str(tmp_path / "p.png") + ".samples.npy").astype(int)
    assert np.abs(ours - theirs).max() <= 1 and (ours != theirs).mean() < 0.01


# ---------------------------------------------------------------------------------------------------------
# the user guide's "train your own model on the latents" example, as printed


def guide_example() -> str:
    text = (ROOT / "docs" / "user-guide.md").read_text()
    section = text[text.index("### Train your own model on the latents") :]
    start = section.index("```python\n") + len("```python\n")
    return section[start : section.index("```", start)]


def test_the_guides_latents_example_runs_on_an_encoded_folder(encoded, tmp_path: Path) -> None:
    import ast

    out, _ = encoded
    code = guide_example()
    imported = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            imported.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported == {"json", "sys", "pathlib", "torch", "safetensors"}, "torch and safetensors only"
    assert len(code.strip().splitlines()) <= 45
    script = tmp_path / "train_latents.py"
    script.write_text(code)
    proc = subprocess.run([sys.executable, str(script), str(out), "2"], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    losses = [float(line.split()[1]) for line in proc.stdout.strip().splitlines()]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    samples, _ = weights.load_tensors(tmp_path / "my-samples.safetensors")
    assert samples["z_clean"].shape == (8, 4, 4, 4) and torch.isfinite(samples["z_clean"]).all()


def test_log_to_tensorboard_mirrors_the_stored_metrics_live(home: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ul_json(home, "train", "--preset", "smoke", "--name", "tb", "--steps", "3", "--set", 'train.log_to=["tensorboard"]',
            "--set", "train.checkpoint_every=2")  # fmt: skip
    store = Store.open(home)
    try:
        run = store.get_run("tb")
        last = max(store.list_checkpoints(run.id), key=lambda c: c.step)
    finally:
        store.close()
    assert last.step == 3
    last.path.unlink()  # as if the run had died before its last checkpoint: it resumes from step 2
    ul_json(home, "resume", "tb", "--steps", "2")  # step 3 is trained (and logged) again, then step 4
    store = Store.open(home)
    try:
        folder = store.run_dir(run.id) / "tensorboard"
        keys = store.metric_keys(run.id)
        stored = {k: store.read_metric(run.id, k) for k in keys}
    finally:
        store.close()
    acc = EventAccumulator(str(folder))
    acc.Reload()
    assert sorted(acc.Tags()["scalars"]) == keys
    for key in ("loss/total", "rate/bits_per_pixel"):
        events = acc.Scalars(key)
        assert [e.step for e in events] == stored[key].steps.astype(int).tolist() == [1, 2, 3, 4]
        np.testing.assert_allclose([e.value for e in events], stored[key].values, rtol=1e-6)
        np.testing.assert_allclose([e.wall_time for e in events], stored[key].wall_times, atol=1e-3)
