"""Tests for kerasrecipes.datasets (the shipped demo zip) and tools/make_demo_data.py."""

import collections
import importlib.util
import io
import os
import zipfile

import numpy as np
import pytest
from PIL import Image

from kerasrecipes import datasets

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _zip_counts(path):
    counts = collections.Counter()
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            split, class_name, _ = name.split("/")
            counts[split, class_name] += 1
    return counts


def test_demo_zip_holds_both_splits_of_every_class():
    assert os.path.getsize(datasets.DEMO_ZIP) <= 20_000_000
    counts = _zip_counts(datasets.DEMO_ZIP)
    for split in ("train", "validation"):
        assert sorted(c for s, c in counts if s == split) == list(datasets.DEMO_CLASS_NAMES)
    assert sum(n for (s, _), n in counts.items() if s == "train") == 3068
    assert sum(n for (s, _), n in counts.items() if s == "validation") == 341
    assert counts["train", "t-shirt"] == 795 and counts["validation", "skirt"] == 12


def test_demo_zip_images_are_small_rgb_jpegs():
    with zipfile.ZipFile(datasets.DEMO_ZIP) as archive:
        names = archive.namelist()
        assert all(n.endswith(".jpg") for n in names)
        for name in names[:: len(names) // 5]:
            with Image.open(io.BytesIO(archive.read(name))) as img:
                assert img.format == "JPEG" and img.mode == "RGB"
                assert min(img.size) == 128, (name, img.size)
    license_path = os.path.join(os.path.dirname(datasets.DEMO_ZIP), "CLOTHING_LICENSE.txt")
    with open(license_path, encoding="utf-8") as f:
        text = f.read()
    assert "alexeygrigorev/clothing-dataset-small" in text and "CC0 1.0 Universal" in text


def test_demo_dir_extracts_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERASRECIPES_CACHE", str(tmp_path / "cache"))
    path = datasets.demo_dir()
    assert os.path.dirname(path) == str(tmp_path / "cache")
    assert sorted(os.listdir(path)) == ["train", "validation"]
    extracted = collections.Counter(
        (split, c) for split in ("train", "validation")
        for c in os.listdir(os.path.join(path, split))
        for _ in os.listdir(os.path.join(path, split, c))
    )
    assert extracted == _zip_counts(datasets.DEMO_ZIP)
    assert os.listdir(tmp_path / "cache") == [os.path.basename(path)]  # No temp folder left.

    def no_extraction(*args, **kwargs):
        raise AssertionError("extracted twice")

    monkeypatch.setattr(zipfile.ZipFile, "extractall", no_extraction)
    assert datasets.demo_dir() == path


def _tiny_zip(path, classes=("cat", "dog"), per_class=2, color=(200, 30, 30)):
    with zipfile.ZipFile(path, "w") as archive:
        for split in ("train", "validation"):
            for class_name in classes:
                for i in range(per_class):
                    buf = io.BytesIO()
                    Image.new("RGB", (20, 16), color).save(buf, format="JPEG")
                    archive.writestr(f"{split}/{class_name}/{i}.jpg", buf.getvalue())
    return str(path)


def test_changed_zip_is_extracted_afresh_and_failures_leave_nothing(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setattr(datasets, "DEMO_ZIP", _tiny_zip(tmp_path / "a.zip"))
    first = datasets.demo_dir(cache=str(cache))
    monkeypatch.setattr(datasets, "DEMO_ZIP", _tiny_zip(tmp_path / "b.zip", color=(0, 0, 200)))
    second = datasets.demo_dir(cache=str(cache))
    assert first != second and os.path.isdir(first) and os.path.isdir(second)

    monkeypatch.setattr(datasets, "DEMO_ZIP", _tiny_zip(tmp_path / "c.zip", per_class=3))

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(zipfile.ZipFile, "extractall", broken)
    with pytest.raises(OSError, match="disk full"):
        datasets.demo_dir(cache=str(cache))
    assert sorted(os.listdir(cache)) == sorted([os.path.basename(first),
                                                os.path.basename(second)])


def test_unsafe_zip_member_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("../escape.jpg", b"x")
    monkeypatch.setattr(datasets, "DEMO_ZIP", str(bad))
    with pytest.raises(ValueError, match="Unsafe path '../escape.jpg'"):
        datasets.demo_dir(cache=str(tmp_path / "cache"))
    assert not os.path.exists(tmp_path / "escape.jpg")


def test_load_demo_builds_image_folder_datasets(tmp_path, monkeypatch):
    monkeypatch.setenv("KERASRECIPES_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets, "DEMO_ZIP", _tiny_zip(tmp_path / "tiny.zip"))
    data = datasets.load_demo(image_size=12, batch_size=4, seed=0)
    assert data.class_names == ["cat", "dog"]
    assert data.num_examples == {"train": 4, "validation": 4}
    images, labels = next(iter(data.train))
    assert images.shape == (4, 12, 12, 3) and images.dtype.name == "uint8"


@pytest.mark.slow
def test_load_demo_real_zip(tmp_path, monkeypatch):
    monkeypatch.setenv("KERASRECIPES_CACHE", str(tmp_path / "cache"))
    data = datasets.load_demo(batch_size=16, seed=0)
    assert data.class_names == list(datasets.DEMO_CLASS_NAMES) and data.skipped == []
    assert data.num_examples == {"train": 3068, "validation": 341}
    images, labels = next(iter(data.validation))
    assert images.shape == (16, 128, 128, 3) and images.dtype.name == "uint8"


def _load_tool():
    spec = importlib.util.spec_from_file_location(
        "make_demo_data", os.path.join(REPO, "tools", "make_demo_data.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_demo_data_is_deterministic_and_downscales(tmp_path):
    tool = _load_tool()
    src = tmp_path / "src"
    rng = np.random.default_rng(0)
    for split in ("train", "validation"):
        for class_name in ("hat", "shoes"):
            os.makedirs(src / split / class_name)
            for i, size in enumerate([(400, 533), (711, 400)]):
                pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(pixels).save(src / split / class_name / f"{i}.jpg")
    (src / "train" / "hat" / "notes.txt").write_text("not an image")

    out1, out2 = str(tmp_path / "1.zip"), str(tmp_path / "2.zip")
    tool.main(["--src", str(src), "--out", out1])
    tool.main(["--src", str(src), "--out", out2])
    with open(out1, "rb") as f1, open(out2, "rb") as f2:
        assert f1.read() == f2.read()
    with zipfile.ZipFile(out1) as archive:
        names = archive.namelist()
        assert names == sorted(names) and len(names) == 8
        sizes = {Image.open(io.BytesIO(archive.read(n))).size for n in names}
    assert sizes == {(160, 213), (284, 160)}  # The largest candidate fits a tiny source.
