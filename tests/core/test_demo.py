"""The shipped demo model as the run `demo`: registration (idempotent, follows a moved bundle, forgets old
weights), read-only status, `ul reconstruct/sample/eval/export --run demo` on the real shipped bundle, and what
it does to held-out photos at its defaults (detail and mean colour)."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from ul_engine.cli.main import main as ul_main
from ul_engine.core import demo
from ul_engine.core.errors import ULError
from ul_engine.store import Store

MAX_BUNDLE_BYTES = 10 * 1024 * 1024


@pytest.fixture(scope="module")
def bundle() -> Path:
    folder = demo.demo_folder()
    if folder is None:
        pytest.fail("the shipped demo model (resources/models/demo/) is missing or incomplete")
    return folder


@pytest.fixture
def store(tmp_path: Path):
    s = Store.open(tmp_path / "home")
    yield s
    s.close()


def test_the_shipped_bundle_is_small_fp16_and_documented() -> None:
    folder = demo.SHIPPED_DIR
    assert demo.is_bundle(folder), "resources/models/demo/ must hold encoder/prior/decoder (+ base) files"
    total = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    assert total <= MAX_BUNDLE_BYTES, f"{total} bytes"
    for path in folder.glob("*.safetensors"):
        with open(path, "rb") as f:  # the safetensors header: 8-byte length, then JSON with each tensor's dtype
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        dtypes = {v["dtype"] for k, v in header.items() if k != "__metadata__"}
        assert dtypes <= {"F16", "I64"}, (path.name, dtypes)
    card = json.dumps(demo.model_card(folder)).lower()
    assert "ul train" in card and "psnr" in card, "model.json names the training command and the metrics"
    assert demo.sample_photos(), "held-out photos ship in resources/samples/"


def test_registering_is_idempotent_and_makes_a_read_only_stage2_run(store: Store, bundle: Path) -> None:
    run = demo.ensure_demo_run(store, folder=bundle)
    assert (run.name, run.status, run.stage) == ("demo", demo.SHIPPED, 2 if (bundle / "base.json").exists() else 1)
    [ck] = store.list_checkpoints(run.id)
    assert ck.kind == demo.BUNDLE_KIND and ck.path.parent == bundle.resolve() and ck.path.is_file()
    again = demo.ensure_demo_run(store, folder=bundle)
    assert again.id == run.id and [c.id for c in store.list_checkpoints(run.id)] == [ck.id]
    with pytest.raises(ULError, match="came with UL Studio"):
        store.enqueue(run.id)


def test_a_moved_bundle_is_followed_and_new_weights_replace_the_old_row(store: Store, bundle: Path, tmp_path) -> None:
    run = demo.ensure_demo_run(store, folder=bundle)
    [first] = store.list_checkpoints(run.id)
    moved = tmp_path / "elsewhere"
    shutil.copytree(bundle, moved)
    demo.ensure_demo_run(store, folder=moved)
    [same] = store.list_checkpoints(run.id)
    assert same.id == first.id and same.sha256 == first.sha256 and same.path.parent == moved.resolve()
    cached = tmp_path / "old-reconstruction.png"
    cached.write_bytes(b"png")
    store.cache_put("a" * 64, same.id, "p" * 64, path=cached)
    with open(moved / "encoder.safetensors", "ab") as f:  # other bytes: other weights
        f.write(b" ")
    demo.ensure_demo_run(store, folder=moved)
    [new] = store.list_checkpoints(run.id)
    assert new.sha256 != first.sha256
    assert store.cache_get("a" * 64, new.id, "p" * 64) is None  # the old weights' reconstructions went


def test_the_users_own_run_named_demo_wins(store: Store, bundle: Path) -> None:
    mine = store.create_run(name="demo", stage=1, preset="smoke", config={})
    assert demo.ensure_demo_run(store, folder=bundle) is None
    assert store.get_run("demo").id == mine.id and store.list_checkpoints(mine.id) == []


def test_a_deleted_demo_stays_away_until_asked_for_by_name(tmp_path: Path, bundle: Path) -> None:
    home = tmp_path / "home"
    with Store.open(home) as store:
        assert demo.ensure_demo_run(store) is not None
    assert ul_main(["--home", str(home), "delete", "demo", "--yes", "--json"]) == 0
    with Store.open(home) as store:
        assert demo.ensure_demo_run(store) is None  # what the app does on start
        assert store.list_runs() == []
        assert demo.get_run(store, "demo").status == demo.SHIPPED  # `--run demo` brings it back
        assert demo.ensure_demo_run(store) is not None


def _photo_crop(tmp_path: Path) -> Path:
    """A 96×72 corner of a shipped held-out photo (small, so the CLI tests stay fast)."""
    image = Image.open(demo.sample_photos()[0]).convert("RGB").crop((0, 0, 96, 72))
    path = tmp_path / "crop.png"
    image.save(path)
    return path


def test_cli_reconstruct_sample_eval_and_export_accept_the_demo_run(
    tmp_path: Path, bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = ["--home", str(tmp_path / "home")]

    def run(*argv: str) -> dict:
        capsys.readouterr()
        code = ul_main([*home, *argv, "--json"])
        out = capsys.readouterr().out.strip().splitlines()
        result = json.loads(out[-1])
        result["_code"] = code
        return result

    rec = run("reconstruct", "--run", "demo", str(_photo_crop(tmp_path)), "--out", str(tmp_path / "rec"),
              "--decoder-steps", "2")  # fmt: skip
    assert rec["_code"] == 0
    [entry] = rec["results"]
    assert entry["error"] is None and entry["run"] == "demo" and 3.0 < entry["psnr"] < 60.0
    assert Image.open(entry["output"]).size == (96, 72) and entry["bits_per_pixel"] > 0
    if (bundle / "base.json").exists():
        sample = run("sample", "--run", "demo", "--n", "1", "--steps", "2", "--decoder-steps", "2",
                     "--out", str(tmp_path / "samples"))  # fmt: skip
        assert sample["_code"] == 0 and Path(sample["outputs"][0]).is_file()
    ev = run("eval", "--run", "demo", "--n", "2", "--decoder-steps", "2")
    assert ev["_code"] == 0 and ev["n"] == 2 and ev["psnr"] > 3.0 and ev["bits_per_pixel"] > 0
    resumed = run("resume", "demo")
    assert resumed["_code"] == 2 and "cannot be trained" in resumed["error"]
    exported = run("export", "demo", "--out", str(tmp_path / "export"))
    assert exported["_code"] == 0 and demo.is_bundle(tmp_path / "export")


def test_tiled_model_is_the_plain_model_on_each_tile(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A photo larger than the demo's 64-pixel crops goes through it tile by tile: the same latents, rates
    (summed) and decodes (seed·1009 + tile index) as the plain model on each tile. In fp32: bf16 kernels
    round differently for a batch of six tiles than for one (tests/diffusion/test_precision.py covers bf16)."""
    import torch

    monkeypatch.setenv("UL_SAMPLING_PRECISION", "fp32")

    from ul_engine.inference import loading as bundles
    from ul_engine.inference.tiling import Tiled

    plain = bundles.load_stage1(bundle)
    tiled = Tiled(plain, 64)
    x = torch.rand(1, 3, 128, 192) * 2 - 1
    tiles = [x[..., r * 64 : (r + 1) * 64, c * 64 : (c + 1) * 64] for r in range(2) for c in range(3)]
    with torch.no_grad():
        z = tiled.encode(x)
        lt = z.shape[-1] // 3
        assert z.shape[-2:] == (2 * lt, 3 * lt)
        for i, tile in enumerate(tiles):
            r, c = divmod(i, 3)
            assert torch.allclose(z[..., r * lt : (r + 1) * lt, c * lt : (c + 1) * lt], plain.encode(tile), atol=1e-5)
        torch.manual_seed(0)
        rate = tiled.estimate_rate(z, draws=2)
        torch.manual_seed(0)
        per_tile = plain.estimate_rate(torch.cat([plain.encode(t) for t in tiles]), draws=2)
        assert torch.allclose(rate, per_tile.sum()[None], rtol=1e-4)
        x_hat = tiled.decode(z, steps=1, seeds=[5])
        one = plain.decode(z[..., lt : 2 * lt, 2 * lt : 3 * lt], steps=1, seeds=[5 * 1009 + 5])
        assert x_hat.shape == x.shape
        assert torch.allclose(x_hat[..., 64:128, 128:192], one, atol=1e-4)
    with pytest.raises(ValueError, match="multiple of the 64-pixel tile"):
        tiled.encode(torch.zeros(1, 3, 64, 100))


def test_blended_tiles_average_overlapping_windows_into_one_image(bundle: Path) -> None:
    """With overlap, one sampler runs over the whole image and each step averages the windows' predictions:
    a window-wise exact function comes out exactly (the weights are normalised, every pixel is covered), a
    single tile is the plain model with the same seed, and a bad overlap is refused."""
    import torch

    from ul_engine.inference import loading as bundles
    from ul_engine.inference.tiling import Tiled

    plain = bundles.load_stage1(bundle)
    down = int(plain.cfg.model.downsample())
    blended = Tiled(plain, 64, overlap=16)
    z = torch.randn(1, plain.cfg.model.latent_channels, 3 * 64 // down, 5 * 64 // down)
    starts = blended._windows(z.shape[-1])
    assert starts[0] == 0 and starts[-1] == z.shape[-1] - 64 // down
    assert all(0 < b - a <= 48 // down for a, b in itertools.pairwise(starts))

    class Upsampled:  # a "decoder" whose prediction is a fixed function of position: windows must agree
        def __getattr__(self, name: str):
            return getattr(plain, name)

        def decoder_x_hat(
            self, x_t: torch.Tensor, z0: torch.Tensor, logsnr: torch.Tensor, condition: object = None
        ) -> torch.Tensor:
            return torch.nn.functional.interpolate(z0[:, :3], scale_factor=down, mode="nearest") + 0 * x_t

    fake = Tiled(Upsampled(), 64, overlap=16)
    with torch.no_grad():
        out = fake.decode(z, steps=1, seeds=[3])
        assert torch.allclose(out, torch.nn.functional.interpolate(z[:, :3], scale_factor=down), atol=1e-5)
        one = z[..., : 64 // down, : 64 // down]
        assert torch.allclose(blended.decode(one, steps=2, seeds=[7]), plain.decode(one, steps=2, seeds=[7]), atol=1e-5)
    with pytest.raises(ValueError, match="overlap"):
        Tiled(plain, 64, overlap=64)


# 128×128 patches of the held-out photos with the colours the first demo lost: the cat's fur and eyes, the red cup
# on brown wood, blue sky over green trees (left, top, right, bottom).
HELD_OUT_PATCHES = {
    "chelsea.jpg": (160, 60, 288, 188),
    "coffee.jpg": (236, 40, 364, 168),
    "rocket.jpg": (0, 0, 128, 128),
}
# Measured at the shipped defaults: 27.3 dB and at most 10.7 levels (the model shipped before: 22.4 dB and 24.9
# levels, blue sky decoded grey). The colour goal is 3 levels (docs/demo-model.md says how far it is); these
# bars catch a model that loses colour or detail again.
MIN_MEAN_PSNR = 25.0
MAX_COLOUR_SHIFT = 13.0


def test_the_demo_keeps_a_held_out_photos_colours_at_its_defaults(
    tmp_path: Path, bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a user sees first: `ul reconstruct --run demo` at the bundle's default sampler and steps on photos it
    never saw keeps their mean colour (largest channel difference, 0–255 levels) and their detail (PSNR)."""
    import numpy as np

    photos = {p.name: p for p in demo.sample_photos()}
    inputs = []
    for name, box in HELD_OUT_PATCHES.items():
        path = tmp_path / f"patch-{name.replace('.jpg', '.png')}"
        Image.open(photos[name]).convert("RGB").crop(box).save(path)
        inputs.append(str(path))
    capsys.readouterr()
    code = ul_main(["--home", str(tmp_path / "home"), "reconstruct", "--run", "demo", *inputs,
                    "--out", str(tmp_path / "rec"), "--json"])  # fmt: skip
    assert code == 0
    results = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["results"]
    shifts = {}
    for entry in results:
        source = np.asarray(Image.open(entry["input"]).convert("RGB"), dtype=np.float64)
        recon = np.asarray(Image.open(entry["output"]).convert("RGB"), dtype=np.float64)
        shifts[Path(entry["input"]).name] = float(np.abs(source.mean(axis=(0, 1)) - recon.mean(axis=(0, 1))).max())
    psnrs = [entry["psnr"] for entry in results]
    assert sum(psnrs) / len(psnrs) >= MIN_MEAN_PSNR, psnrs
    assert max(shifts.values()) <= MAX_COLOUR_SHIFT, shifts
