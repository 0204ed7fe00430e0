"""Reconstructing images one at a time (ul_engine.inference.reconstruct): own resolution, K decodes → mean and std map,
the cache, bad inputs, cancellation, the session op with progress lines, and `ul reconstruct`'s new flags."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ul_engine.cli.main import main as ul_main
from ul_engine.core.errors import ULError
from ul_engine.core.reconstruction import (
    CSV_FIELDS,
    ReconstructCancelled,
    ReconstructParams,
    cached_entry,
    colormap,
    csv_row,
    entry_strip,
    iter_inputs,
    write_metrics_csv,
)
from ul_engine.inference.reconstruct import Reconstructor, reconstruct_many
from ul_engine.store import Store

STEPS = 2  # decoder steps in these tests: the smoke model is untrained, speed is what matters


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A smoke stage-1 run with checkpoints at steps 10 and 20."""
    home = tmp_path_factory.mktemp("ul-home")
    assert ul_main(["--home", str(home), "train", "--preset", "smoke", "--name", "s1", "--steps", "20",
                    "--set", "train.checkpoint_every=10", "--json"]) == 0  # fmt: skip
    return home


@pytest.fixture(scope="module")
def store(home: Path) -> Iterator[Store]:
    s = Store.open(home)
    yield s
    s.close()


@pytest.fixture(scope="module")
def recon(store: Store) -> Reconstructor:
    from ul_engine.inference.loading import load_run

    return Reconstructor(load_run(store, "s1"), store)


@pytest.fixture(scope="module")
def recon10(store: Store) -> Reconstructor:
    from ul_engine.inference.loading import load_run

    return Reconstructor(load_run(store, "s1", step=10), store, label="B")


def noise_png(path: Path, h: int, w: int, seed: int = 0) -> Path:
    Image.fromarray((np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)).save(path)
    return path


def params(**kw: object) -> ReconstructParams:
    return ReconstructParams(**{"decoder_steps": STEPS, "rate_draws": 2, **kw})  # type: ignore[arg-type]


def test_params_hash_is_stable_and_changes_with_every_field() -> None:
    base = params()
    assert base.hash() == params().hash() and len(base.hash()) == 64
    others = [params(decoder_steps=3), params(sampler="ddim"), params(seed=1), params(samples=2), params(rate_draws=3)]
    assert len({base.hash(), *(p.hash() for p in others)}) == 6
    assert ReconstructParams.from_dict(base.as_dict()) == base


@pytest.mark.parametrize(
    ("kw", "message"),
    [({"decoder_steps": 0}, "decoder steps"), ({"sampler": "euler"}, "unknown sampler"), ({"samples": 0}, "samples"),
     ({"seed": -1}, "seed")],
)  # fmt: skip
def test_bad_params_are_refused_with_a_reason(kw: dict, message: str) -> None:
    with pytest.raises(ULError, match=message):
        params(**kw)


def test_odd_size_reconstructs_at_its_own_resolution_with_metrics(recon: Reconstructor, tmp_path: Path) -> None:
    path = noise_png(tmp_path / "odd.png", 21, 30)
    entry = recon.image(path, params(), use_cache=False)
    assert entry["ok"], entry["error"]
    with Image.open(entry["files"]["reconstruction"]) as im:
        assert im.size == (30, 21)
    with Image.open(entry["files"]["input"]) as im:
        assert np.array_equal(np.asarray(im), np.asarray(Image.open(path)))
    m = entry["metrics"]
    assert 0 < m["psnr"] < 60 and -1 <= m["ssim"] <= 1
    assert m["bits_per_pixel"] > 0 and m["bits_per_dim"] > 0 and m["decode_seconds"] > 0
    assert entry["padded"] == [32, 24] and any("padded from 30×21 to 32×24" in n for n in entry["notices"])
    assert entry["checkpoint_step"] == 20 and entry["run_name"] == "s1"


def test_same_seed_gives_the_same_reconstruction_and_bits(recon: Reconstructor, tmp_path: Path) -> None:
    path = noise_png(tmp_path / "a.png", 16, 16, seed=3)
    a = recon.image(path, params(seed=5), out_dir=tmp_path / "a")
    b = recon.image(path, params(seed=5), out_dir=tmp_path / "b")
    c = recon.image(path, params(seed=6), out_dir=tmp_path / "c")
    read = [np.asarray(Image.open(e["files"]["reconstruction"])) for e in (a, b, c)]
    assert np.array_equal(read[0], read[1]) and not np.array_equal(read[0], read[2])
    assert a["metrics"]["bits"] == b["metrics"]["bits"]


def test_k_decodes_give_mean_and_std_map(recon: Reconstructor, tmp_path: Path) -> None:
    path = noise_png(tmp_path / "k.png", 16, 24, seed=1)
    one = recon.image(path, params(seed=2), use_cache=False)
    entry = recon.image(path, params(seed=2, samples=3), use_cache=False)
    files, m = entry["files"], entry["metrics"]
    std = np.load(files["std"])
    assert std.shape == (16, 24) and std.dtype == np.float32 and (std >= 0).all() and std.max() > 0
    mean = np.asarray(Image.open(files["mean"]))
    assert mean.shape == (16, 24, 3)
    assert np.asarray(Image.open(files["std_png"])).shape == (16, 24, 3)
    assert m["std_mean"] == pytest.approx(float(std.mean()), rel=1e-5) and m["psnr_mean"] > 0
    # decode 0 is the K = 1 reconstruction (same seeds): K only adds decodes
    first = np.asarray(Image.open(files["reconstruction"]))
    assert np.array_equal(first, np.asarray(Image.open(one["files"]["reconstruction"])))


def test_cache_hit_by_content_and_miss_by_parameters(recon: Reconstructor, store: Store, tmp_path: Path) -> None:
    path = noise_png(tmp_path / "c.png", 12, 12, seed=9)
    first = recon.image(path, params(seed=11))
    assert first["ok"] and not first["cached"]
    copy = tmp_path / "renamed.png"
    copy.write_bytes(path.read_bytes())
    calls: list[int] = []
    hit = recon.image(copy, params(seed=11), progress=lambda d, t, w: calls.append(d))
    assert hit["cached"] and hit["input"] == str(copy) and calls == []
    assert hit["metrics"] == first["metrics"] and hit["files"] == first["files"]
    looked_up = cached_entry(store, first["sha256"], recon.checkpoint_id, params(seed=11), path)
    assert looked_up is not None and looked_up["metrics"] == first["metrics"]
    assert cached_entry(store, first["sha256"], recon.checkpoint_id, params(seed=12), path) is None
    miss = recon.image(path, params(seed=12))
    assert not miss["cached"]
    Path(first["files"]["reconstruction"]).unlink()  # a cache entry whose file went is a miss
    assert cached_entry(store, first["sha256"], recon.checkpoint_id, params(seed=11), path) is None


def _png_claiming(path: Path, width: int, height: int) -> Path:
    Image.new("RGB", (4, 4), (9, 9, 9)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def _truncated(path: Path, fmt: str) -> Path:
    noise_png(path.with_suffix(".full.png"), 64, 64)
    Image.open(path.with_suffix(".full.png")).save(path, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_bad_inputs_get_messages_and_the_others_go_on(recon: Reconstructor, tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("not an image\n")
    bad = {
        "file is empty": tmp_path / "empty.png",
        "not an image": tmp_path / "notes.jpg",
        "decompression bomb": _png_claiming(tmp_path / "bomb.png", 40000, 40000),
        "truncated": _truncated(tmp_path / "cut.png", "PNG"),
        "truncated ": _truncated(tmp_path / "cut.jpg", "JPEG"),
        "file not found": tmp_path / "missing.png",
    }
    good = [noise_png(tmp_path / "g1.png", 8, 8, 1), noise_png(tmp_path / "g2.png", 8, 12, 2)]
    order = [good[0], *bad.values(), good[1]]
    results = reconstruct_many(recon, order, params())
    assert [r["ok"] for r in results] == [True] + [False] * len(bad) + [True]
    for (reason, path), r in zip(bad.items(), results[1:-1], strict=True):
        assert reason.strip() in r["error"] and str(path) in r["error"] and "\n" not in r["error"], r["error"]


def test_tiny_images_are_padded_with_a_reason(recon: Reconstructor, tmp_path: Path) -> None:
    one = recon.image(noise_png(tmp_path / "1x1.png", 1, 1), params(), use_cache=False)
    thin = recon.image(noise_png(tmp_path / "3x500.png", 500, 3), params(), use_cache=False)
    assert one["ok"] and thin["ok"]
    assert one["padded"] == [8, 8] and one["metrics"]["ssim"] is None
    assert any("SSIM" in n for n in one["notices"]) and any("padded from 1×1" in n for n in one["notices"])
    assert Image.open(thin["files"]["reconstruction"]).size == (3, 500) and thin["padded"] == [8, 500]


def test_an_image_above_the_side_limit_is_downscaled_with_a_notice(recon: Reconstructor, tmp_path: Path) -> None:
    entry = recon.image(noise_png(tmp_path / "wide.png", 8, 2100), params(), use_cache=False)
    assert entry["ok"] and (entry["width"], entry["source_width"]) == (2048, 2100)
    assert any("downscaled from 2100×8" in n for n in entry["notices"])


def test_cancel_between_images_and_inside_one(recon: Reconstructor, store: Store, tmp_path: Path) -> None:
    paths = [noise_png(tmp_path / f"{i}.png", 8, 8, 100 + i) for i in range(4)]
    done: list[int] = []
    results = reconstruct_many(recon, paths, params(), progress=lambda i, e: done.append(i),
                               cancelled=lambda: len(done) >= 2)  # fmt: skip
    assert len(results) == 2
    ticks: list[str] = []
    with pytest.raises(ReconstructCancelled):
        recon.image(paths[3], params(decoder_steps=4), progress=lambda d, t, w: ticks.append(w),
                    cancelled=lambda: len(ticks) >= 3)  # fmt: skip
    assert cached_entry(store, __import__("hashlib").sha256(paths[3].read_bytes()).hexdigest(),
                        recon.checkpoint_id, params(decoder_steps=4), paths[3]) is None  # fmt: skip


def test_compare_two_checkpoints_on_the_same_image(
    recon: Reconstructor, recon10: Reconstructor, tmp_path: Path
) -> None:
    path = noise_png(tmp_path / "cmp.png", 16, 16, 4)
    [entry] = reconstruct_many(recon, [path], params(samples=2), compare=recon10)
    other = entry["compare"]
    assert entry["ok"] and other["ok"] and (entry["checkpoint_step"], other["checkpoint_step"]) == (20, 10)
    assert entry["checkpoint_id"] != other["checkpoint_id"] and other["label"] == "B"
    strip = entry_strip(entry, other)
    assert strip.ndim == 3 and strip.shape[1] > 6 * 96  # input, A, |diff|, B, |A−B|, mean, std
    rows = [csv_row(entry, "A"), csv_row(other, "B")]
    write_metrics_csv(tmp_path / "m.csv", rows)
    lines = (tmp_path / "m.csv").read_text().splitlines()
    assert lines[0].split(",") == list(CSV_FIELDS) and len(lines) == 3


def test_colormap_and_folder_walk(tmp_path: Path) -> None:
    rgb = colormap(np.array([[0.0, 5.0, 10.0, 20.0]]), 10.0)
    assert rgb.shape == (1, 4, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [0, 0, 4] and rgb[0, 2].tolist() == rgb[0, 3].tolist() == [252, 255, 164]
    (tmp_path / "b" / "c").mkdir(parents=True)
    for name in ("b/c/z.png", "b/a.JPG", "b/notes.txt", "top.webp"):
        (tmp_path / name).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in iter_inputs([tmp_path])]
    assert found == ["top.webp", "b/a.JPG", "b/c/z.png"]
    assert list(iter_inputs([tmp_path], cancelled=lambda: True)) == []


def test_session_op_streams_progress_and_honours_the_cancel_file(home: Path, store: Store, tmp_path: Path) -> None:
    from ul_engine.worker.session import Session

    session = Session(store)
    events: list[dict] = []
    session.emit = events.append
    path = noise_png(tmp_path / "op.png", 8, 8, 21)
    ck20 = max(store.list_checkpoints(1), key=lambda c: c.step)
    ck10 = min(store.list_checkpoints(1), key=lambda c: c.step)
    request = {"op": "image.reconstruct", "path": str(path), "checkpoint_id": ck20.id,
               "params": {"decoder_steps": 3, "rate_draws": 2}, "compare": {"checkpoint_id": ck10.id}}  # fmt: skip
    result = session.handle(request)
    assert result["entry"]["ok"] and result["compare"]["checkpoint_step"] == 10
    progress = [e for e in events if e["event"] == "progress"]
    done = [e["done"] for e in progress]
    assert done == sorted(done) and done[-1] == 10 and {e["total"] for e in progress} == {10}
    partial = [e for e in events if e["event"] == "partial"]
    assert [e["model"] for e in partial] == [0, 1]  # A's images, then B's, each before its bits
    assert partial[0]["entry"]["ok"] and partial[0]["entry"]["metrics"]["bits"] is None
    assert partial[0]["entry"]["metrics"]["psnr"] == result["entry"]["metrics"]["psnr"]
    again = session.handle(request)
    assert again["entry"]["cached"] and again["compare"]["cached"]
    cancel = tmp_path / "cancel"
    cancel.touch()
    with pytest.raises(ReconstructCancelled, match="cancelled"):
        session.handle({**request, "params": {"decoder_steps": 3, "seed": 7}, "cancel_file": str(cancel)})


def test_cli_samples_compare_and_checkpoint(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = noise_png(tmp_path / "photo.png", 12, 20, 5)
    (tmp_path / "text.png").write_text("nope")
    code = ul_main(["--home", str(home), "reconstruct", "--run", "s1", str(good), str(tmp_path / "text.png"),
                    "--out", str(tmp_path / "out"), "--decoder-steps", "2", "--samples", "3", "--compare", "s1",
                    "--compare-checkpoint", "10", "--checkpoint", "20", "--json"])  # fmt: skip
    assert code == 2  # one input failed
    results = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["results"]
    ok, bad = results
    assert ok["error"] is None and ok["checkpoint_step"] == 20 and ok["compare"]["checkpoint_step"] == 10
    out = tmp_path / "out"
    assert Path(ok["output"]) == out / "photo.recon.png" and Image.open(ok["output"]).size == (20, 12)
    assert Path(ok["mean"]) == out / "photo.mean.png" and Path(ok["std_map"]) == out / "photo.std.png"
    assert Path(ok["compare"]["output"]) == out / "photo.recon.s1-step10.png"
    assert "ul-what" in Image.open(ok["std_map"]).text and ok["std_mean"] > 0
    assert "not an image" in bad["error"]
    assert ul_main(["--home", str(home), "reconstruct", "--run", "s1", str(good), "--out", str(out),
                    "--samples", "0"]) == 2  # fmt: skip
    assert ul_main(["--home", str(home), "reconstruct", "--run", "s1", str(good), "--out", str(out),
                    "--checkpoint", "15"]) == 2  # fmt: skip
