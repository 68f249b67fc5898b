"""IDX parsing on hand-written files, the ImageFolder conversion, and (when Debian's
dataset-fashion-mnist is installed) the real files."""
import gzip
import os
import struct

import numpy as np
import pytest
from PIL import Image

from maebench.data import fashion_mnist
from maebench.data.fashion_mnist import CLASSES, prepare, read_idx
from maebench.errors import MaebenchError, UsageError

REAL = fashion_mnist.DEFAULT_SOURCE / "train-labels-idx1-ubyte.gz"


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX by the published format: 0, 0, type 0x08 (ubyte), ndim, big-endian dims, data."""
    return bytes([0, 0, 8, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes()


def write_source(folder, n_train=23, n_test=11, compress=True):
    """A tiny Fashion-MNIST lookalike with 5x4 images whose first pixel is the index."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = {}
    for stem, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 5, 4), dtype=np.uint8)
        images[:, 0, 0] = np.arange(n)
        labels = (np.arange(n) % 10).astype(np.uint8)
        for kind, arr in (("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)):
            name = f"{stem}-{kind}"
            if compress:
                with gzip.open(folder / f"{name}.gz", "wb") as f:
                    f.write(idx_bytes(arr))
            else:
                (folder / name).write_bytes(idx_bytes(arr))
        out[stem] = (images, labels)
    return out


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx(tmp_path, compress):
    data = write_source(tmp_path, compress=compress)
    suffix = ".gz" if compress else ""
    images = read_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", 2051)
    labels = read_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", 2049)
    assert images.dtype == np.uint8 and images.shape == (23, 5, 4)
    assert np.array_equal(images, data["train"][0]) and np.array_equal(labels, data["train"][1])


def test_bad_idx_files_are_named(tmp_path):
    good = idx_bytes(np.zeros((3, 2, 2), np.uint8))
    cases = {
        "labels-as-images": (good, 2049, "magic number 0x00000803, expected 0x00000801"),
        "short": (good[:-1], 2051, "header says \\(3, 2, 2\\)"),
        "tiny": (b"\x00\x00", 2051, "not an IDX file"),
    }
    for name, (payload, magic, message) in cases.items():
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(MaebenchError, match=message) as err:
            read_idx(tmp_path / name, magic)
        assert str(tmp_path / name) in str(err.value)
    (tmp_path / "cut.gz").write_bytes(gzip.compress(good)[:-12])
    with pytest.raises(MaebenchError) as err:
        read_idx(tmp_path / "cut.gz", 2051)
    assert str(tmp_path / "cut.gz") in str(err.value)


def test_conversion_to_imagefolder(tmp_path):
    data = write_source(tmp_path / "src")
    meta = prepare(tmp_path / "out", source=tmp_path / "src")
    assert meta["counts"]["train"]["T-shirt_top"] == 3 and meta["counts"]["val"]["Ankle_boot"] == 1
    for split, stem in (("train", "train"), ("val", "t10k")):
        images, labels = data[stem]
        assert sorted(os.listdir(tmp_path / "out" / split)) == sorted(CLASSES)
        files = {f"{c}/{f}" for c in CLASSES for f in os.listdir(tmp_path / "out" / split / c)}
        assert files == {f"{CLASSES[labels[i]]}/{i:05d}.png" for i in range(len(labels))}
        for i in (0, len(labels) - 1):
            with Image.open(tmp_path / "out" / split / CLASSES[labels[i]] / f"{i:05d}.png") as img:
                assert img.mode == "L" and np.array_equal(np.asarray(img), images[i])
    assert (tmp_path / "out" / "meta.json").is_file()
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []


def test_limit_per_class(tmp_path):
    write_source(tmp_path / "src", compress=False)
    meta = prepare(tmp_path / "out", source=tmp_path / "src", limit_per_class=2)
    assert meta["counts"]["train"] == {c: 2 for c in CLASSES}  # 23 images: each class has >= 2
    assert sorted(os.listdir(tmp_path / "out" / "train" / "Trouser")) == ["00001.png", "00011.png"]
    assert meta["counts"]["val"]["T-shirt_top"] == 2 and meta["counts"]["val"]["Trouser"] == 1
    with pytest.raises(UsageError):
        prepare(tmp_path / "out2", source=tmp_path / "src", limit_per_class=0)


def test_missing_files_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "DEFAULT_SOURCE", tmp_path / "absent")
    with pytest.raises(MaebenchError, match="apt-get install dataset-fashion-mnist"):
        prepare(tmp_path / "out")
    write_source(tmp_path / "src")
    (tmp_path / "src" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(MaebenchError, match="t10k-labels-idx1-ubyte\\[.gz\\] not found") as err:
        prepare(tmp_path / "out", source=tmp_path / "src")
    assert str(tmp_path / "src") in str(err.value)
    assert not (tmp_path / "out").exists()


def test_mismatched_counts_are_an_error(tmp_path):
    write_source(tmp_path / "src", compress=False)
    (tmp_path / "src" / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(5, np.uint8)))
    with pytest.raises(MaebenchError, match="23 images but .* has 5 labels"):
        prepare(tmp_path / "out", source=tmp_path / "src")


@pytest.mark.skipif(not REAL.exists(), reason="Debian package dataset-fashion-mnist is not installed")
def test_real_fashion_mnist(tmp_path):
    labels = read_idx(REAL, 2049)
    assert labels.shape == (60000,) and np.bincount(labels).tolist() == [6000] * 10
    test_images = read_idx(fashion_mnist.DEFAULT_SOURCE / "t10k-images-idx3-ubyte.gz", 2051)
    assert test_images.shape == (10000, 28, 28)
    meta = prepare(tmp_path / "fm", limit_per_class=1)
    assert meta["counts"]["val"] == {c: 1 for c in CLASSES}
    # the first test image is an ankle boot (label 9)
    with Image.open(tmp_path / "fm" / "val" / "Ankle_boot" / "00000.png") as img:
        assert np.array_equal(np.asarray(img), test_images[0])
