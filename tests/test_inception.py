"""The FID Inception-v3 loads a state dict with the reference key names and shapes, and refuses wrong files.

The reference layout below is written out independently from the published architecture (torchvision's
Inception3 blocks with pytorch-fid's FID patches: 1008 classes, no aux head), so a mistake in the module's
layer names, channel counts or kernel shapes fails here. The weights are synthetic (random), never the
real 95 MB file.
"""

import hashlib

import pytest
import torch

from scorekit.metrics import inception as inc
from scorekit.metrics.features import InceptionExtractor, get_extractor


def _reference_convs():
    """(prefix, in_channels, out_channels, kh, kw) of all 94 BasicConv2d layers of the FID Inception-v3."""
    convs = [
        ("Conv2d_1a_3x3", 3, 32, 3, 3),
        ("Conv2d_2a_3x3", 32, 32, 3, 3),
        ("Conv2d_2b_3x3", 32, 64, 3, 3),
        ("Conv2d_3b_1x1", 64, 80, 1, 1),
        ("Conv2d_4a_3x3", 80, 192, 3, 3),
    ]
    for name, cin, pool in (("Mixed_5b", 192, 32), ("Mixed_5c", 256, 64), ("Mixed_5d", 288, 64)):
        convs += [
            (f"{name}.branch1x1", cin, 64, 1, 1),
            (f"{name}.branch5x5_1", cin, 48, 1, 1),
            (f"{name}.branch5x5_2", 48, 64, 5, 5),
            (f"{name}.branch3x3dbl_1", cin, 64, 1, 1),
            (f"{name}.branch3x3dbl_2", 64, 96, 3, 3),
            (f"{name}.branch3x3dbl_3", 96, 96, 3, 3),
            (f"{name}.branch_pool", cin, pool, 1, 1),
        ]
    convs += [
        ("Mixed_6a.branch3x3", 288, 384, 3, 3),
        ("Mixed_6a.branch3x3dbl_1", 288, 64, 1, 1),
        ("Mixed_6a.branch3x3dbl_2", 64, 96, 3, 3),
        ("Mixed_6a.branch3x3dbl_3", 96, 96, 3, 3),
    ]
    for name, c in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        convs += [
            (f"{name}.branch1x1", 768, 192, 1, 1),
            (f"{name}.branch7x7_1", 768, c, 1, 1),
            (f"{name}.branch7x7_2", c, c, 1, 7),
            (f"{name}.branch7x7_3", c, 192, 7, 1),
            (f"{name}.branch7x7dbl_1", 768, c, 1, 1),
            (f"{name}.branch7x7dbl_2", c, c, 7, 1),
            (f"{name}.branch7x7dbl_3", c, c, 1, 7),
            (f"{name}.branch7x7dbl_4", c, c, 7, 1),
            (f"{name}.branch7x7dbl_5", c, 192, 1, 7),
            (f"{name}.branch_pool", 768, 192, 1, 1),
        ]
    convs += [
        ("Mixed_7a.branch3x3_1", 768, 192, 1, 1),
        ("Mixed_7a.branch3x3_2", 192, 320, 3, 3),
        ("Mixed_7a.branch7x7x3_1", 768, 192, 1, 1),
        ("Mixed_7a.branch7x7x3_2", 192, 192, 1, 7),
        ("Mixed_7a.branch7x7x3_3", 192, 192, 7, 1),
        ("Mixed_7a.branch7x7x3_4", 192, 192, 3, 3),
    ]
    for name, cin in (("Mixed_7b", 1280), ("Mixed_7c", 2048)):
        convs += [
            (f"{name}.branch1x1", cin, 320, 1, 1),
            (f"{name}.branch3x3_1", cin, 384, 1, 1),
            (f"{name}.branch3x3_2a", 384, 384, 1, 3),
            (f"{name}.branch3x3_2b", 384, 384, 3, 1),
            (f"{name}.branch3x3dbl_1", cin, 448, 1, 1),
            (f"{name}.branch3x3dbl_2", 448, 384, 3, 3),
            (f"{name}.branch3x3dbl_3a", 384, 384, 1, 3),
            (f"{name}.branch3x3dbl_3b", 384, 384, 3, 1),
            (f"{name}.branch_pool", cin, 192, 1, 1),
        ]
    return convs


def synthetic_state_dict(seed=0, with_counters=False):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for prefix, cin, cout, kh, kw in _reference_convs():
        sd[f"{prefix}.conv.weight"] = torch.randn(cout, cin, kh, kw, generator=g) * (2.0 / (cin * kh * kw)) ** 0.5
        sd[f"{prefix}.bn.weight"] = 1 + 0.1 * torch.randn(cout, generator=g)
        sd[f"{prefix}.bn.bias"] = 0.1 * torch.randn(cout, generator=g)
        sd[f"{prefix}.bn.running_mean"] = 0.1 * torch.randn(cout, generator=g)
        sd[f"{prefix}.bn.running_var"] = 1 + 0.1 * torch.rand(cout, generator=g)
        if with_counters:
            sd[f"{prefix}.bn.num_batches_tracked"] = torch.tensor(0)
    sd["fc.weight"] = 0.01 * torch.randn(1008, 2048, generator=g)
    sd["fc.bias"] = 0.01 * torch.randn(1008, generator=g)
    return sd


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("inc") / "synthetic_inception.pth"
    torch.save(synthetic_state_dict(), path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_reference_layout_matches_the_module():
    ref = synthetic_state_dict()
    assert len(_reference_convs()) == 94 and len(ref) == 94 * 5 + 2
    # 23,885,392 floats: 95.54 MB of tensor bytes, the published 95,628,359-byte file less its pickle framing.
    assert sum(v.numel() for v in ref.values()) == 23_885_392
    own = {k: tuple(v.shape) for k, v in inc.FIDInceptionV3().state_dict().items()}
    own = {k: s for k, s in own.items() if not k.endswith("num_batches_tracked")}
    assert own == {k: tuple(v.shape) for k, v in ref.items()}


def test_loads_reference_keys_and_runs(weights_file, monkeypatch):
    path, digest = weights_file
    net, got = inc.load_fid_inception(path, sha256=digest)
    assert got == digest
    sd = synthetic_state_dict()
    assert torch.equal(net.state_dict()["Mixed_7c.branch_pool.conv.weight"], sd["Mixed_7c.branch_pool.conv.weight"])
    gray = torch.rand(2, 1, 40, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        feats, logits = net(gray.expand(-1, 3, -1, -1))
    assert feats.shape == (2, 2048) and logits.shape == (2, 1008)
    assert (feats >= 0).all()  # average of ReLU outputs
    torch.testing.assert_close(logits, feats @ sd["fc.weight"].T)  # IS logits: pool3 · W, no bias
    # The extractor: grayscale → 3 channels, float64 features, batched identically to one pass.
    monkeypatch.setenv(inc.INCEPTION_ENV, str(path))
    ext = get_extractor("auto", "image", (1, 32, 32), inception_sha256=digest)
    assert isinstance(ext, InceptionExtractor) and ext.sha256 == digest
    ext.batch_size = 1
    f = ext.features(gray)
    assert f.dtype.name == "float64" and f.shape == (2, 2048)
    assert abs(f - feats.double().numpy()).max() < 1e-4


def test_accepts_batchnorm_counters(tmp_path):
    path = tmp_path / "with_counters.pth"
    torch.save(synthetic_state_dict(seed=3, with_counters=True), path)
    net, _ = inc.load_fid_inception(path, sha256=None)
    assert isinstance(net, inc.FIDInceptionV3)


def test_refuses_wrong_hash(weights_file):
    path, digest = weights_file
    with pytest.raises(ValueError, match="SHA-256") as e:
        inc.load_fid_inception(path)  # the published hash: a synthetic file is not the reference file
    assert inc.FID_INCEPTION_SHA256 in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ValueError, match="expected 0000"):
        inc.load_fid_inception(path, sha256="0" * 64)


def test_refuses_wrong_keys_and_shapes(tmp_path):
    sd = synthetic_state_dict()
    bad = dict(sd)
    bad["Mixed_6b.branch7x7_2.conv.weight"] = bad["Mixed_6b.branch7x7_2.conv.weight"].transpose(2, 3).contiguous()
    torch.save(bad, tmp_path / "shape.pth")
    with pytest.raises(ValueError, match="Mixed_6b.branch7x7_2.conv.weight"):
        inc.load_fid_inception(tmp_path / "shape.pth", sha256=None)
    missing = {k: v for k, v in sd.items() if k != "fc.bias"}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="fc.bias"):
        inc.load_fid_inception(tmp_path / "missing.pth", sha256=None)
    extra = {**sd, "AuxLogits.fc.weight": torch.zeros(1008, 768)}
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match="AuxLogits"):
        inc.load_fid_inception(tmp_path / "extra.pth", sha256=None)


def test_missing_weights_message_says_where(monkeypatch, tmp_path):
    monkeypatch.delenv(inc.INCEPTION_ENV, raising=False)
    for call in (lambda: inc.load_fid_inception(None), lambda: get_extractor("auto", "image", (3, 32, 32))):
        with pytest.raises(ValueError) as e:
            call()
        msg = str(e.value)
        assert "--inception-weights" in msg and inc.INCEPTION_ENV in msg and inc.FID_INCEPTION_URL in msg
    with pytest.raises(ValueError, match="not found"):
        inc.load_fid_inception(tmp_path / "nope.pth")
    with pytest.raises(ValueError, match="no feature extractor fits"):
        get_extractor("auto", "image", (3, 16, 16))


def test_evaluate_command_with_inception(weights_file, tmp_path, monkeypatch):
    """`scorekit evaluate --extractor inception` runs the whole pipeline on a local (synthetic) weights file."""
    import json

    import numpy as np

    from scorekit.cli import main
    from scorekit.data import load_data

    path, digest = weights_file
    monkeypatch.delenv(inc.INCEPTION_ENV, raising=False)
    x = load_data("digits", split="test", num=6, seed=0).user_data().numpy()
    np.savez(tmp_path / "s.npz", samples=x)
    out = tmp_path / "m.json"
    common = ["evaluate", "--samples", str(tmp_path / "s.npz"), "--data", "digits", "--out", str(out)]
    common += ["--extractor", "inception", "--ref-split", "test", "--num-ref", "6", "--kid-subsets", "3"]
    assert main(common + ["--inception-weights", str(path)]) == 2  # published hash: synthetic file refused
    assert main(common + ["--inception-weights", str(path), "--inception-sha256", digest]) == 0
    m = json.loads(out.read_text())
    assert m["feature_extractor"] == "inception" and m["feature_extractor_sha256"] == digest
    assert m["quantized_uint8"] is True and m["num_reference"] == 6 == m["num_samples"]
    assert m["fid"] == pytest.approx(0.0, abs=1e-3) and (m["precision"], m["recall"]) == (1.0, 1.0)
