"""Metrics: PSNR/SSIM, Fréchet distance and KID against closed forms and torchmetrics, the shipped shapes
classifier (FD-shapes), and the Inception-v3 loader (real FID only from a user's file)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.linalg
import torch

from ul_engine.core.errors import ULError
from ul_engine.eval.metrics import frechet, inception
from ul_engine.eval.metrics.features import (
    DEFAULT_PATH,
    FEATURE_DIM,
    classify,
    load_shapes_classifier,
    render_labelled,
    shapes_features,
)
from ul_engine.eval.metrics.fidelity import psnr_ssim
from ul_engine.eval.metrics.generation import fd_shapes, fid_inception


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- fidelity ------------------------------------------------------------------------------------


def test_psnr_of_a_known_error():
    x = torch.zeros(2, 3, 16, 16)
    y = x + 0.2  # [0,1] error 0.1 → MSE 0.01 → 20 dB
    psnr, ssim = psnr_ssim(x, y)
    assert psnr == pytest.approx([20.0, 20.0], abs=1e-4)
    assert all(0 < s <= 1 for s in ssim)
    assert np.isnan(psnr_ssim(x[:, :, :10, :10], y[:, :, :10, :10])[1][0])  # below SSIM's 11×11 window


@pytest.mark.parametrize("size", [(11, 11), (16, 16), (32, 32), (27, 40), (64, 64)])
def test_ssim_is_the_published_one(size: tuple[int, int]):
    """The standard SSIM (Wang et al.): scikit-image's Gaussian-window version, border cropped."""
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(sum(size))
    a = rng.random((2, 3, *size))
    b = np.clip(a + rng.normal(0, 0.15, a.shape) + np.linspace(0, 0.2, size[1]), 0, 1)
    _, ours = psnr_ssim(torch.tensor(a * 2 - 1), torch.tensor(b * 2 - 1))
    for i in range(2):
        expected = structural_similarity(
            a[i], b[i], channel_axis=0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0
        )
        assert abs(ours[i] - expected) <= 1e-4, (size, ours[i], expected)


# -- Fréchet distance and KID ----------------------------------------------------------------------


def test_frechet_distance_closed_forms():
    # 1-D: (μ1 − μ2)² + (s1 − s2)²
    assert frechet.frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[1.0]])) == (
        pytest.approx(9.0 + 1.0)
    )
    # diagonal covariances: Σ (√a − √b)² + ‖Δμ‖²
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 4.0, 1.0])
    mu = np.array([0.5, 0.0, -1.0])
    expected = mu @ mu + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet.frechet_distance(mu, np.diag(a), np.zeros(3), np.diag(b)) == pytest.approx(expected)
    # a general pair agrees with the textbook formula through scipy's sqrtm of Σ1·Σ2
    rng = np.random.default_rng(0)
    m1, m2 = rng.normal(size=(8, 8)), rng.normal(size=(8, 8))
    s1, s2 = m1 @ m1.T + 0.1 * np.eye(8), m2 @ m2.T + 0.1 * np.eye(8)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    textbook = (mu1 - mu2) @ (mu1 - mu2) + np.trace(s1 + s2 - 2 * covmean)
    assert frechet.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(textbook, rel=1e-8)
    assert frechet.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8)
    assert frechet.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(frechet.frechet_distance(mu2, s2, mu1, s1))


def test_frechet_of_samples_matches_torchmetrics_fid_with_a_custom_extractor():
    from torchmetrics.image.fid import FrechetInceptionDistance

    class Flatten(torch.nn.Module):
        num_features = 12

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)[:, :12].double()

    rng = np.random.default_rng(1)
    a = rng.normal(size=(300, 12))
    b = rng.normal(loc=0.3, scale=1.5, size=(300, 12))
    metric = FrechetInceptionDistance(feature=Flatten(), normalize=True)
    metric.update(torch.from_numpy(a).reshape(300, 3, 2, 2).float(), real=True)
    metric.update(torch.from_numpy(b).reshape(300, 3, 2, 2).float(), real=False)
    ours = frechet.frechet_distance_features(a.astype(np.float32), b.astype(np.float32))
    assert ours == pytest.approx(float(metric.compute()), rel=1e-4)


def test_kernel_distance_matches_torchmetrics_poly_mmd():
    from torchmetrics.image.kid import poly_mmd

    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(50, 6)), rng.normal(loc=0.5, size=(40, 6))
    mean, std = frechet.kernel_distance(a, b, subsets=3, subset_size=40)
    # subsets of the full smaller set: every draw of b is all of b; compare one draw by hand
    sub = np.random.default_rng(0)
    ia, ib = sub.choice(50, 40, replace=False), sub.choice(40, 40, replace=False)
    theirs = float(poly_mmd(torch.from_numpy(a[ia]), torch.from_numpy(b[ib])))
    assert frechet._poly_mmd2(a[ia], b[ib]) == pytest.approx(theirs, rel=1e-9)
    assert mean > 0.05 and std >= 0
    same, _ = frechet.kernel_distance(a, rng.normal(size=(50, 6)), subsets=20, subset_size=40)
    assert abs(same) < 0.05 < mean  # unbiased: about 0 for two samples of one distribution


# -- the shipped shapes classifier -----------------------------------------------------------------------


def test_shipped_classifier_and_its_recorded_accuracy():
    model, info = load_shapes_classifier()
    assert DEFAULT_PATH.stat().st_size < 1_000_000
    assert info["heldout"]["kind_accuracy"] >= 0.95 and info["heldout"]["n"] >= 1000
    sidecar = json.loads(DEFAULT_PATH.with_suffix(".json").read_text())
    assert sidecar["sha256"] == info["sha256"] and sidecar["heldout"] == info["heldout"]
    assert "train_shapes_classifier" in info["command"]
    data = render_labelled(seed=987_654, start=0, count=200)  # neither the training nor the held-out stream
    pred = classify(model, torch.from_numpy(data["x"]))
    assert (pred["kind"] == data["kind"]).mean() > 0.93
    feats = shapes_features(model, torch.from_numpy(data["x"]))
    assert feats.shape == (200, FEATURE_DIM) and feats.dtype == np.float64
    small = torch.nn.functional.interpolate(torch.from_numpy(data["x"][:4]), size=(16, 16), mode="area")
    assert shapes_features(model, small).shape == (4, FEATURE_DIM)  # other sizes are resized to 32


def test_fd_shapes_separates_real_from_broken_images():
    real_a = torch.from_numpy(render_labelled(seed=11, start=0, count=128)["x"])
    real_b = torch.from_numpy(render_labelled(seed=12, start=0, count=128)["x"])
    blurred = torch.nn.functional.avg_pool2d(real_b, 4).repeat_interleave(4, 2).repeat_interleave(4, 3)
    noise = torch.rand_like(real_b) * 2 - 1
    floor = fd_shapes(real_a, real_b)
    assert floor["metric"] == "fd_shapes" and floor["n_real"] == floor["n_fake"] == 128
    assert fd_shapes(real_a, blurred)["value"] > 2 * floor["value"]
    assert fd_shapes(real_a, noise)["value"] > 10 * floor["value"]
    assert len(floor["kind_histogram_real"]) == 4 and sum(floor["kind_histogram_real"]) == pytest.approx(1, abs=1e-3)


def test_class_agreement_reads_each_set_against_its_own_labels():
    """Round trips of other images than the reference set: the fakes' classes are not the real images'."""
    a, b = render_labelled(seed=11, start=0, count=128), render_labelled(seed=12, start=0, count=128)
    real, fake = torch.from_numpy(a["x"]), torch.from_numpy(b["x"])
    own = fd_shapes(real, fake, labels=b["kind"].tolist(), real_labels=a["kind"].tolist())
    assert own["class_agreement"] > 0.9 and own["class_agreement_real"] > 0.9
    shared = fd_shapes(real, fake, labels=b["kind"].tolist())  # guided samples: the reference image's class
    assert shared["class_agreement"] == own["class_agreement"] and shared["class_agreement_real"] < 0.6


def test_missing_classifier_says_how_to_train_it(tmp_path):
    with pytest.raises(ULError, match="train_shapes_classifier"):
        load_shapes_classifier(tmp_path / "nope.safetensors")


# -- Inception-v3 --------------------------------------------------------------------------------------


def test_inception_layouts_match_torchvision():
    """torchvision's inception_v3 has 27,161,264 parameters (its docs); the FID layout drops the aux head
    and has 1008 classes."""
    tv = inception.InceptionV3("torchvision")
    assert sum(p.numel() for p in tv.parameters()) == 27_161_264
    fid = inception.InceptionV3("fid")
    assert "AuxLogits.fc.weight" not in fid.state_dict() and fid.fc.weight.shape == (1008, 2048)
    assert {k for k in tv.state_dict() if not k.startswith(("AuxLogits", "fc"))} == {
        k for k in fid.state_dict() if not k.startswith("fc")
    }
    with torch.no_grad():
        assert fid.eval()(torch.zeros(1, 3, 75, 75)).shape == (1, 2048)


def test_inception_weights_are_recognised_by_sha256_prefix():
    assert inception.recognise("6726825d" + "0" * 56).variant == "fid"
    assert inception.recognise("0CC3C7BD" + "f" * 56).comparable is False
    assert inception.recognise("deadbeef" * 8) is None


def test_fid_is_unavailable_without_weights_never_replaced():
    x = torch.zeros(2, 3, 16, 16)
    out = fid_inception(x, x, None)
    assert out == {"metric": "fid_inception_v3", "value": None, "available": False, "reason": out["reason"]}
    assert "--inception-weights" in out["reason"]


def test_inception_files_that_do_not_fit_are_refused(tmp_path):
    from ul_engine import weights

    path = tmp_path / "weights.safetensors"
    weights.save_tensors(path, {"fc.weight": torch.zeros(1008, 2048)}, {})
    with pytest.raises(ULError, match="not an Inception-v3 state dict"):
        inception.load_inception(path)
    with pytest.raises(ULError, match="does not exist"):
        inception.load_inception(tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ULError, match="not a readable"):
        inception.load_inception(junk)


def test_unrecognised_inception_weights_give_a_labelled_fid(tmp_path, monkeypatch):
    """A file of the FID layout with an unknown hash loads, and the result says it is not comparable;
    the same file listed as known is reported by name. (Random weights: only the wiring is tested.)"""
    torch.manual_seed(0)
    path = tmp_path / "pt_inception-random.pth"
    torch.save(inception.InceptionV3("fid").state_dict(), path)
    real = torch.rand(3, 3, 32, 32) * 2 - 1
    fake = torch.rand(3, 3, 32, 32) * 2 - 1
    out = fid_inception(real, fake, path)
    assert out["metric"] == "fid_inception_v3" and out["available"] and np.isfinite(out["value"])
    assert out["recognised"] is False and out["comparable"] is False
    assert out["note"] == inception.UNRECOGNISED_NOTE and out["variant"] == "fid"
    sha = out["weights_sha256"]
    known = inception.KnownWeights(sha[:8], "test weights", "fid", True, "comparable (test)")
    monkeypatch.setattr(inception, "KNOWN_WEIGHTS", (known,))
    loaded = inception.load_inception(path)
    assert loaded.recognised == known and loaded.describe()["comparable"] is True
