"""Tests for kerasrecipes.data.scan: unreadable files are found before training and reported."""

import io
import os

import pytest
from PIL import Image

from test_data_decode import _rand
from kerasrecipes.data import image_folder_datasets


def _add_bad_files(root):
    """Adds bad files to class `cat` of `root`; returns {filename: reason keyword}."""
    cat = os.path.join(root, "cat")
    open(os.path.join(cat, "empty.jpg"), "wb").close()
    good = io.BytesIO()
    Image.fromarray(_rand((64, 64, 3), 0)).save(good, format="JPEG")
    with open(os.path.join(cat, "truncated.jpg"), "wb") as f:
        f.write(good.getvalue()[: len(good.getvalue()) // 2])
    png = io.BytesIO()
    Image.fromarray(_rand((64, 64, 3), 1)).save(png, format="PNG")
    with open(os.path.join(cat, "cut.png"), "wb") as f:
        f.write(png.getvalue()[: len(png.getvalue()) // 2])
    with open(os.path.join(cat, "readme.jpg"), "w") as f:
        f.write("This is not a photo.\n")
    with open(os.path.join(cat, "phone.png"), "wb") as f:
        f.write(b"\x00\x00\x00\x18ftypheic" + bytes(64))
    with open(os.path.join(cat, "._hidden.jpg"), "wb") as f:  # macOS resource fork.
        f.write(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(40))
    # Not images by extension: ignored without a word.
    with open(os.path.join(cat, "notes.txt"), "w") as f:
        f.write("hello")
    with open(os.path.join(root, "dog", ".DS_Store"), "wb") as f:
        f.write(bytes(16))
    return {
        "empty.jpg": "empty",
        "truncated.jpg": "truncated",
        "cut.png": "truncated",
        "readme.jpg": "text",
        "phone.png": "unsupported format: HEIC",
        "._hidden.jpg": "unsupported",
    }


def test_bad_files_are_skipped_and_reported(image_folder):
    bad = _add_bad_files(image_folder)
    with pytest.warns(UserWarning, match=r"Skipped 6 unreadable image file\(s\)"):
        data = image_folder_datasets(image_folder, image_size=16, batch_size=4, seed=0)
    reasons = {os.path.basename(p): r for p, r in data.skipped}
    assert sorted(reasons) == sorted(bad)
    for name, keyword in bad.items():
        assert keyword in reasons[name], (name, reasons[name])
    assert data.num_examples == {"train": 12}
    # A whole epoch runs through, twice (the second from the cache), with only the good files.
    for _ in range(2):
        assert sum(int(y.shape[0]) for _, y in data.train) == 12


def test_file_broken_after_the_scan_does_not_stop_the_epoch(image_folder):
    data = image_folder_datasets(image_folder, image_size=8, batch_size=4, cache=False, seed=0)
    assert int(data.train.cardinality()) == 3  # Known length: 12 images in batches of 4.
    victim = data.files["train"][0][0]
    with open(victim, "r+b") as f:
        f.truncate(40)
    # The epoch still completes with 12 images: the broken one is replaced from the next pass.
    for _ in range(2):
        assert sum(int(y.shape[0]) for _, y in data.train) == 12


def test_bad_files_raise_names_every_file(image_folder):
    bad = _add_bad_files(image_folder)
    with pytest.raises(ValueError, match="6 image file") as info:
        image_folder_datasets(image_folder, on_bad_file="raise")
    for name in bad:
        assert name in str(info.value)


def test_class_with_only_bad_files_is_an_error(image_folder):
    os.makedirs(os.path.join(image_folder, "owl"))
    open(os.path.join(image_folder, "owl", "empty.png"), "wb").close()
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="owl.*no readable images"):
        image_folder_datasets(image_folder)


def test_scan_shows_progress_for_many_files(tmp_path, capsys):
    for cls in ("a", "b"):
        os.makedirs(tmp_path / cls)
        for i in range(160):
            Image.new("L", (2, 2), i).save(tmp_path / cls / f"{i}.png")
    data = image_folder_datasets(str(tmp_path), image_size=2, batch_size=64)
    assert data.num_examples == {"train": 320}
    assert "Scanning images: 320 files" in capsys.readouterr().out
