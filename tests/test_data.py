"""Data loading: built-in sets, every file format (made here in tmp_path), transforms, pictures."""

import gzip
import json
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from scorekit.analytic import GaussianMixture
from scorekit.data import (
    DataTransform,
    image_grid,
    infer_array_layout,
    load_data,
    read_idx,
    save_image_grid,
    save_scatter,
)


# --- helpers that write files in the documented formats -----------------------------------------------------
def write_idx(path, arr: np.ndarray, gz: bool = False):
    code = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B, np.dtype(">f4"): 0x0D}
    dt = arr.dtype if arr.dtype.itemsize == 1 else arr.dtype.newbyteorder(">")
    raw = struct.pack(">HBB", 0, code[dt], arr.ndim) + struct.pack(f">{arr.ndim}i", *arr.shape)
    raw += arr.astype(dt).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


def random_images(n, h, w, seed=0, c=None):
    rng = np.random.default_rng(seed)
    shape = (n, h, w) if c is None else (n, h, w, c)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


# --- built-in sets ------------------------------------------------------------------------------------------
def test_digits_split_range_and_round_trip():
    train, test, full = (load_data("digits", split=s) for s in ("train", "test", "all"))
    assert full.shape == (1, 8, 8) and full.kind == "image" and full.num_classes == 10
    assert len(full) == 1797 and len(train) + len(test) == 1797 and len(test) == round(0.2 * 1797)
    # train and test are disjoint and cover everything: compare rows as bytes
    rows = lambda d: {r.numpy().tobytes() + bytes([int(y)]) for r, y in zip(d.data, d.labels)}  # noqa: E731
    assert not rows(train) & rows(test)
    assert rows(train) | rows(test) == rows(full)
    assert full.data.dtype == torch.float32 and full.labels.dtype == torch.int64
    assert full.data.min() == -1.0 and full.data.max() == 1.0
    assert set(full.labels.tolist()) == set(range(10))
    # user range: sklearn values 0..16 → k/16 exactly
    u = full.user_data()
    assert torch.allclose(u * 16, (u * 16).round(), atol=1e-5) and u.min() == 0 and u.max() == 1
    from sklearn.datasets import load_digits

    ref = torch.from_numpy(load_digits().images / 16.0).float()
    assert torch.allclose(u[:, 0].sum(0), ref.sum(0), atol=1e-3)  # same images, any order
    # the split does not depend on the caller's seed; num subsamples reproducibly
    assert torch.equal(load_data("digits", seed=5).data, train.data)
    a, b = load_data("digits", num=100, seed=3), load_data("digits", num=100, seed=3)
    assert len(a) == 100 and torch.equal(a.data, b.data) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.data, load_data("digits", num=100, seed=4).data)


@pytest.mark.parametrize("name", ["moons", "swissroll", "rings", "checkerboard"])
def test_toys_deterministic_standardised(name):
    a = load_data(name, num=3000, seed=1)
    assert a.kind == "vector" and a.shape == (2,) and len(a) == 3000 and a.labels is None
    assert torch.equal(a.data, load_data(name, num=3000, seed=1).data)
    assert not torch.equal(a.data, load_data(name, num=3000, seed=2).data)
    # standardised: scalar mean ≈ 0 and std ≈ 1 over all coordinates, one transform for every draw and split
    assert abs(a.data.mean().item()) < 0.08 and abs(a.data.std().item() - 1) < 0.08
    test = load_data(name, split="test", num=3000, seed=1)
    assert test.transform == a.transform and not torch.equal(test.data, a.data)
    cfg = json.loads(json.dumps(a.transform.to_config()))
    back = DataTransform.from_config(cfg)
    assert torch.allclose(back.to_model(a.user_data()), a.data, atol=1e-5)


def test_toy_shapes_are_what_they_claim():
    rings = load_data("rings", num=4000).user_data().double()
    r = rings.norm(dim=1)
    assert ((r - r.round()).abs() < 0.4).float().mean() > 0.99  # radii near 1, 2, 3, 4
    counts = torch.bincount(r.round().long().clamp(1, 4) - 1, minlength=4).double() / 4000
    assert torch.allclose(counts, torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64), atol=0.03)
    cb = load_data("checkerboard", num=4000).user_data().double()
    assert cb.abs().max() <= 2.0
    assert ((cb.floor().sum(1) % 2) == 0).all()  # only squares whose floor-sum is even
    moons = load_data("moons", num=4000).user_data().double()
    assert moons[:, 0].min() > -1.4 and moons[:, 0].max() < 2.4


def test_gmm_spec_samples_identity_transform(tmp_path):
    spec = {
        "weights": [0.25, 0.75],
        "means": [[-2.0, 0.0], [3.0, 1.0]],
        "variances": [[0.1, 0.2], [0.3, 0.05]],
        "labels": [1, 0],
    }
    p = tmp_path / "g.json"
    p.write_text(json.dumps(spec))
    d = load_data(f"gmm:{p}", num=20000, seed=0)
    assert d.kind == "vector" and d.shape == (2,) and d.num_classes == 2
    assert d.transform.to_config() == {"kind": "vector", "shift": 0.0, "scale": 1.0}
    gmm = GaussianMixture.from_spec(spec)
    assert torch.allclose(d.data.double().mean(0), gmm.mean(), atol=0.05)
    # labels follow the component: label 1 ↔ the component at x ≈ −2
    assert ((d.data[:, 0] < 0.5) == (d.labels == 1)).float().mean() > 0.999
    assert abs((d.labels == 1).float().mean().item() - 0.25) < 0.015
    assert torch.equal(d.data, load_data(f"gmm:{p}", num=20000, seed=0).data)
    unl = tmp_path / "u.json"
    unl.write_text(json.dumps({k: spec[k] for k in ("weights", "means", "variances")}))
    assert load_data(f"gmm:{unl}", num=10).labels is None


# --- IDX ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_and_single_file(tmp_path, gz):
    sfx = ".gz" if gz else ""
    tr, te = random_images(12, 6, 5, 0), random_images(4, 6, 5, 1)
    ytr, yte = np.arange(12, dtype=np.uint8) % 3, np.array([0, 1, 2, 2], dtype=np.uint8)
    write_idx(tmp_path / f"train-images-idx3-ubyte{sfx}", tr, gz)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{sfx}", ytr, gz)
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{sfx}", te, gz)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{sfx}", yte, gz)
    d = load_data(str(tmp_path))
    assert d.shape == (1, 6, 5) and len(d) == 12 and d.num_classes == 3
    assert torch.equal(d.labels, torch.from_numpy(ytr.astype(np.int64)))
    assert torch.allclose(d.user_data()[:, 0] * 255, torch.from_numpy(tr).float(), atol=1e-3)
    t = load_data(str(tmp_path), split="test")
    assert len(t) == 4 and torch.allclose(t.user_data()[:, 0] * 255, torch.from_numpy(te).float(), atol=1e-3)
    assert len(load_data(str(tmp_path), split="all")) == 16
    single = load_data(str(tmp_path / f"t10k-images-idx3-ubyte{sfx}"))
    assert torch.equal(single.data, t.data) and torch.equal(single.labels, t.labels)


def test_read_idx_other_dtypes(tmp_path):
    a = np.arange(24, dtype=np.int16).reshape(2, 3, 4) - 5
    write_idx(tmp_path / "a.idx", a)
    assert np.array_equal(read_idx(tmp_path / "a.idx"), a)
    f = np.linspace(0, 1, 6, dtype=np.float32).reshape(6)
    write_idx(tmp_path / "f.idx", f.astype(">f4"))
    assert np.allclose(read_idx(tmp_path / "f.idx"), f)


def test_idx_errors_name_the_file(tmp_path):
    imgs = random_images(5, 4, 4)
    good = tmp_path / "train-images-idx3-ubyte"
    write_idx(good, imgs)
    raw = good.read_bytes()
    (tmp_path / "trunc-images-idx3-ubyte").write_bytes(raw[:-7])
    with pytest.raises(ValueError, match=r"trunc-images-idx3-ubyte.*truncated"):
        load_data(str(tmp_path / "trunc-images-idx3-ubyte"))
    (tmp_path / "magic-images-idx3-ubyte").write_bytes(b"\x08\x00" + raw[2:])
    with pytest.raises(ValueError, match=r"magic-images-idx3-ubyte.*magic"):
        load_data(str(tmp_path / "magic-images-idx3-ubyte"))
    (tmp_path / "bad-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw)[:20])
    with pytest.raises(ValueError, match=r"bad-images-idx3-ubyte.gz"):
        load_data(str(tmp_path / "bad-images-idx3-ubyte.gz"))
    flipped = bytearray(gzip.compress(raw))
    flipped[12:20] = b"\xff" * 8  # damaged deflate stream
    (tmp_path / "flip-images-idx3-ubyte.gz").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match=r"flip-images-idx3-ubyte.gz: cannot read"):
        load_data(str(tmp_path / "flip-images-idx3-ubyte.gz"))
    # labels that do not match the images
    sub = tmp_path / "mnist"
    sub.mkdir()
    write_idx(sub / "train-images-idx3-ubyte", imgs)
    write_idx(sub / "train-labels-idx1-ubyte", np.zeros(3, dtype=np.uint8))
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte"):
        load_data(str(sub))
    with pytest.raises(ValueError, match="t10k"):
        load_data(str(sub), split="test")


# --- CIFAR-10 batches ---------------------------------------------------------------------------------------
def write_cifar(folder, n_per_batch=4, batches=2):
    folder.mkdir()
    rng = np.random.default_rng(0)
    out = {}
    for name in [f"data_batch_{i + 1}" for i in range(batches)] + ["test_batch"]:
        data = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n_per_batch)]
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"data": data, b"labels": labels}, f)
        out[name] = (data, labels)
    return out


def test_cifar_batches(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    ref = write_cifar(root)
    d = load_data(str(root))
    assert d.shape == (3, 32, 32) and len(d) == 8 and d.num_classes == 10 and d.kind == "image"
    exp = np.concatenate([ref["data_batch_1"][0], ref["data_batch_2"][0]]).reshape(-1, 3, 32, 32)
    assert torch.allclose(d.user_data() * 255, torch.from_numpy(exp).float(), atol=1e-3)
    assert d.labels.tolist() == ref["data_batch_1"][1] + ref["data_batch_2"][1]
    t = load_data(str(tmp_path), split="test")  # the parent folder works too
    assert len(t) == 4 and t.labels.tolist() == ref["test_batch"][1]
    # the channel layout is R plane, G plane, B plane (row-major 32×32 each)
    assert torch.allclose(t.user_data()[0, 1, 0, :] * 255, torch.from_numpy(ref["test_batch"][0][0, 1024:1056]).float())


def test_cifar_refuses_foreign_pickles_and_corruption(tmp_path):
    root = tmp_path / "c"
    write_cifar(root, batches=1)

    class Evil:
        def __reduce__(self):
            return (print, ("never run",))

    with open(root / "data_batch_1", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": [0]}, f)
    with pytest.raises(ValueError, match=r"data_batch_1.*refusing to load builtins.print"):
        load_data(str(root))
    (root / "data_batch_1").write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(ValueError, match=r"data_batch_1.*uint8 \[N, 3072\]"):
        load_data(str(root))
    (root / "data_batch_1").write_bytes(b"\x80\x04garbage")
    with pytest.raises(ValueError, match="data_batch_1"):
        load_data(str(root))


# --- image folders ------------------------------------------------------------------------------------------
def test_image_folder_with_classes_gray_and_rgb(tmp_path):
    gray = random_images(5, 7, 9, seed=2)
    root = tmp_path / "gray"
    for k, cls in enumerate(["cat", "dog"]):
        (root / cls).mkdir(parents=True)
        for i in range(2 + k):
            Image.fromarray(gray[2 * k + i]).save(root / cls / f"{i}.png")
    d = load_data(str(root))
    assert d.shape == (1, 7, 9) and len(d) == 5 and d.num_classes == 2 and d.labels.tolist() == [0, 0, 1, 1, 1]
    order = [0, 1, 2, 3, 4]
    assert torch.allclose(d.user_data()[:, 0] * 255, torch.from_numpy(gray[order]).float(), atol=1e-3)

    rgb = random_images(3, 4, 6, seed=3, c=3)
    flat = tmp_path / "rgb"
    flat.mkdir()
    for i in range(3):
        Image.fromarray(rgb[i]).save(flat / f"im{i}.png")
    r = load_data(str(flat))
    assert r.shape == (3, 4, 6) and r.labels is None and r.num_classes == 0
    assert torch.allclose(r.user_data() * 255, torch.from_numpy(rgb.transpose(0, 3, 1, 2)).float(), atol=1e-3)
    # JPEG is read too (lossy, so only the shape and rough values are checked)
    Image.fromarray(rgb[0]).save(flat / "im9.jpg", quality=95)
    assert load_data(str(flat)).shape == (3, 4, 6)


def test_image_folder_errors(tmp_path):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.fromarray(random_images(1, 8, 8)[0]).save(mixed / "a.png")
    Image.fromarray(random_images(1, 16, 16)[0]).save(mixed / "b.png")
    with pytest.raises(ValueError, match=r"differ in size.*a\.png is 8×8.*b\.png is 16×16"):
        load_data(str(mixed))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"empty: no images"):
        load_data(str(empty))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ValueError, match=r"x\.png: cannot read image"):
        load_data(str(broken))


# --- numpy arrays -------------------------------------------------------------------------------------------
def test_npy_npz_layouts(tmp_path):
    vec = np.random.default_rng(0).normal(3.0, 2.0, size=(500, 3))
    np.save(tmp_path / "v.npy", vec)
    d = load_data(str(tmp_path / "v.npy"))
    assert d.kind == "vector" and d.shape == (3,)
    assert abs(d.transform.shift - vec.mean()) < 1e-9 and abs(d.transform.scale - vec.std()) < 1e-9
    assert torch.allclose(d.user_data().double(), torch.from_numpy(vec), atol=1e-5)

    nhwc = random_images(6, 5, 4, c=3)
    np.savez(tmp_path / "a.npz", images=nhwc, labels=np.array([0, 1, 2, 0, 1, 5]))
    a = load_data(str(tmp_path / "a.npz"))
    assert a.shape == (3, 5, 4) and a.num_classes == 6 and a.labels.dtype == torch.int64
    assert torch.allclose(a.user_data() * 255, torch.from_numpy(nhwc.transpose(0, 3, 1, 2)).float(), atol=1e-3)

    nchw = np.random.default_rng(1).random((4, 1, 6, 6)).astype(np.float32)
    np.savez(tmp_path / "b.npz", x=nchw, y=np.arange(4))
    b = load_data(str(tmp_path / "b.npz"))
    assert b.shape == (1, 6, 6) and torch.allclose(b.user_data(), torch.from_numpy(nchw), atol=1e-6)
    assert torch.allclose(b.transform.to_model(b.user_data()), b.data, atol=1e-6)  # to_model ∘ to_user
    np.save(tmp_path / "g.npy", nchw[:, 0])  # [N, H, W] → one channel
    assert load_data(str(tmp_path / "g.npy")).shape == (1, 6, 6)
    c = load_data(str(tmp_path / "v.npy"), num=50, seed=1)
    assert len(c) == 50 and torch.equal(c.data, load_data(str(tmp_path / "v.npy"), num=50, seed=1).data)


def test_npy_npz_errors(tmp_path):
    bad = np.ones((5, 2))
    bad[2, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(ValueError, match=r"nan\.npy: contains NaN"):
        load_data(str(tmp_path / "nan.npy"))
    np.save(tmp_path / "empty.npy", np.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"empty\.npy: empty"):
        load_data(str(tmp_path / "empty.npy"))
    np.save(tmp_path / "range.npy", np.full((2, 1, 4, 4), 3.0, dtype=np.float32))
    with pytest.raises(ValueError, match=r"range\.npy: float images must lie in \[0, 1\]"):
        load_data(str(tmp_path / "range.npy"))
    np.savez(tmp_path / "keys.npz", foo=np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"keys\.npz: no array named x/data/images/samples \(has foo\)"):
        load_data(str(tmp_path / "keys.npz"))
    np.savez(tmp_path / "lab.npz", x=np.ones((3, 2)), y=np.arange(4))
    with pytest.raises(ValueError, match=r"lab\.npz: 4 labels for 3 samples"):
        load_data(str(tmp_path / "lab.npz"))
    raw = (tmp_path / "keys.npz").read_bytes()
    (tmp_path / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"trunc\.npz: cannot read"):
        load_data(str(tmp_path / "trunc.npz"))
    (tmp_path / "junk.npy").write_bytes(b"nonsense")
    with pytest.raises(ValueError, match=r"junk\.npy: cannot read"):
        load_data(str(tmp_path / "junk.npy"))
    np.save(tmp_path / "odd.npy", np.zeros((2, 5, 5, 5)))
    with pytest.raises(ValueError, match=r"odd\.npy: cannot interpret"):
        load_data(str(tmp_path / "odd.npy"))


def test_spec_errors():
    with pytest.raises(ValueError, match=r"data not found: nosuchset \(built-in names"):
        load_data("nosuchset")
    with pytest.raises(ValueError, match="unknown split"):
        load_data("moons", split="valid")
    with pytest.raises(ValueError, match="num must be a positive integer"):
        load_data("moons", num=0)
    with pytest.raises(ValueError, match="GMM spec file not found"):
        load_data("gmm:/no/such.json")
    with pytest.raises(ValueError, match="positive scale"):
        DataTransform("vector", 0.0, 0.0)


# --- transforms ---------------------------------------------------------------------------------------------
def test_image_transform_round_trip_and_clamp():
    t = DataTransform.image()
    x = torch.linspace(-1, 1, 101)
    assert torch.allclose(t.to_model(t.to_user(x)), x, atol=1e-6)
    assert t.to_user(torch.tensor([-3.0, 3.0])).tolist() == [0.0, 1.0]
    assert t.to_user(np.array([-3.0, 0.0])).tolist() == [0.0, 0.5]
    assert DataTransform.from_config(json.loads(json.dumps(t.to_config()))) == t


# --- pictures -----------------------------------------------------------------------------------------------
def test_image_grid_layout_and_files(tmp_path):
    x = torch.zeros(5, 3, 2, 3)
    for i in range(5):
        x[i] = i / 4
    g = image_grid(x, nrow=3, padding=1)
    assert g.shape == (2 * 3 + 1, 3 * 4 + 1, 3) and g.dtype == np.uint8
    assert (g[1:3, 1:4] == 0).all() and (g[1:3, 5:8] == round(255 / 4)).all()
    assert (g[4:6, 5:8] == 255).all() and (g[0] == 255).all()  # image 4 at row 1, col 1; padding is white
    p = save_image_grid(tmp_path / "grid.png", torch.rand(6, 1, 8, 8), nrow=3)
    with Image.open(p) as im:
        assert im.mode == "L" and im.size == (4 * (3 * 9 + 1), 4 * (2 * 9 + 1))  # 8 px tiles enlarged ×4
    q = save_scatter(tmp_path / "s.png", torch.randn(100, 2), ref=torch.randn(50, 2), title="t")
    with Image.open(q) as im:
        assert im.size[0] > 100
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        save_scatter(tmp_path / "bad.png", torch.randn(10, 3))


def test_idx_alternative_file_names(tmp_path):
    """Kaggle's PREFIX-images.idx3-ubyte and EMNIST's emnist-SET-PREFIX-images-idx3-ubyte with test-… files."""
    kag = tmp_path / "kaggle"
    kag.mkdir()
    write_idx(kag / "train-images.idx3-ubyte", random_images(3, 4, 4))
    write_idx(kag / "train-labels.idx1-ubyte", np.array([2, 0, 1], np.uint8))
    assert load_data(str(kag)).labels.tolist() == [2, 0, 1]
    em = tmp_path / "emnist"
    em.mkdir()
    write_idx(em / "emnist-digits-train-images-idx3-ubyte.gz", random_images(3, 4, 4), gz=True)
    write_idx(em / "emnist-digits-train-labels-idx1-ubyte.gz", np.array([1, 1, 0], np.uint8), gz=True)
    write_idx(em / "emnist-digits-test-images-idx3-ubyte.gz", random_images(2, 4, 4), gz=True)
    write_idx(em / "emnist-digits-test-labels-idx1-ubyte.gz", np.array([0, 1], np.uint8), gz=True)
    assert load_data(str(em)).labels.tolist() == [1, 1, 0]
    assert load_data(str(em), split="test").labels.tolist() == [0, 1]


def test_array_layout_inference():
    assert infer_array_layout((7, 5)) == "vector" and infer_array_layout((7, 8, 8)) == "nhw"
    assert infer_array_layout((7, 3, 32, 32)) == "nchw" and infer_array_layout((7, 32, 32, 3)) == "nhwc"
    assert infer_array_layout((7, 3, 4, 4)) == "nchw" and infer_array_layout((7, 4, 4, 3)) == "nhwc"  # square wins
    with pytest.raises(ValueError, match="cannot interpret"):
        infer_array_layout((7, 2, 5, 5, 5))
