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
        "._hidden.jpg": "macOS resource fork",
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


# ---------------------------------------------------------------------------------------------
# Huge images.


def _png_bomb(path, side=20_000):
    """A real `side × side` 1-bit PNG of zeros: a few kilobytes on disk, 400 MB decoded as L."""
    import struct
    import zlib

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    row = b"\x00" * (1 + (side + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0,
                                                                 0, 0))
                + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_decompression_bomb_is_refused_from_its_header_in_bounded_memory(image_folder, tmp_path):
    import subprocess
    import sys

    bomb = os.path.join(image_folder, "cat", "bomb.png")
    _png_bomb(bomb)
    assert os.path.getsize(bomb) < 100_000
    with pytest.warns(UserWarning, match="Skipped 1 unreadable"):
        data = image_folder_datasets(image_folder, image_size=8)
    (path, reason), = data.skipped
    assert path == bomb
    assert reason.startswith("image too large: 20000 × 20000 = 400,000,000 pixels, over "
                             "max_image_pixels=89,478,485 (refused from its header, not decoded")
    # In a fresh process, with its peak RSS reset (Linux `clear_refs`): the scan adds far less
    # than the 400 MB that decoding the bomb would take.
    code = (
        "import sys\n"
        "from kerasrecipes.data.scan import scan_files\n"
        "def status(key):\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith(key):\n"
        "            return int(line.split()[1])\n"
        "open('/proc/self/clear_refs', 'w').write('5')\n"
        "base = status('VmRSS:')\n"
        "check, = scan_files([sys.argv[1]])\n"
        "assert check.reason.startswith('image too large'), check\n"
        "print(status('VmHWM:') - base)\n"
    )
    if not os.path.exists("/proc/self/clear_refs"):
        pytest.skip("needs Linux /proc/self/clear_refs to measure the peak memory of the scan")
    out = subprocess.run([sys.executable, "-c", code, bomb], capture_output=True, text=True,
                         check=True, timeout=120)
    assert int(out.stdout) < 50_000, f"the scan's peak RSS grew by {out.stdout} KiB"


def test_max_image_pixels_is_the_one_limit(image_folder, monkeypatch):
    from PIL import Image

    from kerasrecipes.data import scan

    # The fixture's images are 24 × 32 = 768 pixels.
    with pytest.warns(UserWarning, match="Skipped 12 unreadable"), \
            pytest.raises(ValueError, match="no readable images"):
        image_folder_datasets(image_folder, max_image_pixels=700)
    reason = scan.inspect_file(os.path.join(image_folder, "cat", "000.jpg"),
                               max_image_pixels=700)[1]
    assert reason.startswith("image too large: 32 × 24 = 768 pixels, over max_image_pixels=700")
    assert image_folder_datasets(image_folder, max_image_pixels=768).num_examples == {"train": 12}
    # A limit above PIL's own guard wins over it during the scan; the guard is restored after.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    assert image_folder_datasets(image_folder, max_image_pixels=None).num_examples == {
        "train": 12}
    assert Image.MAX_IMAGE_PIXELS == 100
    for bad in (0, -5, 1.5, "big", True):
        with pytest.raises(ValueError, match=f"max_image_pixels must be a positive int.*"
                                             f"{bad!r}"):
            image_folder_datasets(image_folder, max_image_pixels=bad)


def test_each_file_is_read_once(image_folder, monkeypatch):
    import builtins
    import collections

    from kerasrecipes.data import scan

    opened = collections.Counter()

    def counting_open(path, *args, **kwargs):
        opened[os.fspath(path)] += 1
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(scan, "open", counting_open, raising=False)
    data = image_folder_datasets(image_folder, image_size=8, cache=False)
    assert len(opened) == 12 and set(opened.values()) == {1}
    assert len(data.report.duplicates) == 0


# ---------------------------------------------------------------------------------------------
# The data report: duplicates, leakage, class balance.


def _copy(src, dst):
    import shutil

    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def test_duplicates_and_leakage_are_reported_by_name(make_image_folder):
    root = make_image_folder(splits={"train": 4, "validation": 2, "test": 2})
    train, val, test = (os.path.join(root, s) for s in ("train", "validation", "test"))
    leak_val = _copy(f"{train}/cat/000.jpg", f"{val}/cat/leak.jpg")
    leak_test = _copy(f"{train}/dog/001.png", f"{test}/dog/leak.png")
    inside = _copy(f"{train}/fox/002.jpg", f"{train}/fox/zz_copy.jpg")
    conflict = _copy(f"{train}/cat/003.png", f"{train}/dog/zz_cat.png")
    with pytest.warns(UserWarning) as record:
        data = image_folder_datasets(root, image_size=8)
    messages = [str(w.message) for w in record]
    assert messages == data.report.warnings
    leakage = next(m for m in messages if m.startswith("Leakage: 2 image(s)"))
    assert "1 in train and test, 1 in train and validation" in leakage
    assert f"{train}/cat/000.jpg = {leak_val}" in leakage and leak_test in leakage
    assert "--dedupe" in leakage and "the train copy goes" in leakage
    assert any(m.startswith("1 image(s) appear under different classes") and conflict in m
               for m in messages)
    assert any(m.startswith("1 file(s) are exact copies of another file of the same class")
               and inside in m for m in messages)
    groups = {frozenset(p for _, p, _ in g) for g in data.report.duplicates}
    assert frozenset({f"{train}/cat/000.jpg", leak_val}) in groups and len(groups) == 4
    assert data.report.dropped == []
    assert data.num_examples == {"train": 14, "validation": 7, "test": 7}  # Nothing dropped.


def test_dedupe_drops_the_train_copy_and_leaves_evaluation_untouched(make_image_folder):
    root = make_image_folder(splits={"train": 4, "validation": 2, "test": 2})
    train, val, test = (os.path.join(root, s) for s in ("train", "validation", "test"))
    _copy(f"{train}/cat/000.jpg", f"{val}/cat/leak.jpg")
    _copy(f"{val}/dog/000.jpg", f"{test}/dog/leak.jpg")
    _copy(f"{train}/fox/002.jpg", f"{train}/fox/zz_copy.jpg")
    _copy(f"{train}/cat/003.png", f"{train}/dog/zz_cat.png")
    before = {s: len(list_) for s, list_ in
              image_folder_datasets(root, image_size=8).files.items()}
    data = image_folder_datasets(root, image_size=8, dedupe=True)
    dropped = dict(data.report.dropped)
    assert sorted(dropped) == sorted([f"{train}/cat/000.jpg", f"{val}/dog/000.jpg",
                                      f"{train}/fox/zz_copy.jpg", f"{train}/cat/003.png",
                                      f"{train}/dog/zz_cat.png"])
    assert dropped[f"{train}/cat/000.jpg"].endswith("(validation): dropped from train")
    assert dropped[f"{val}/dog/000.jpg"].endswith("(test): dropped from validation")
    assert "different labels" in dropped[f"{train}/dog/zz_cat.png"]
    assert data.num_examples == {"train": before["train"] - 4,
                                 "validation": before["validation"] - 1, "test": before["test"]}
    kept = {p for split in data.files.values() for p, _ in split}
    assert f"{train}/fox/002.jpg" in kept and f"{test}/dog/leak.jpg" in kept
    assert not [w for w in data.report.warnings if "copies" in w or "Leakage" in w]
    assert "left out: 5 duplicate(s) dropped" in data.report.summary()


def test_dedupe_happens_before_the_validation_split(make_image_folder):
    root = make_image_folder(per_class=6)
    for i in range(6):  # Six copies of one cat photo: some land on each side of a 50% split.
        _copy(f"{root}/cat/000.jpg", f"{root}/cat/copy_{i}.jpg")
    with pytest.warns(UserWarning, match=r"Leakage: 1 image\(s\) are exact copies in more than "
                                         r"one split \(1 in train and validation\)"):
        image_folder_datasets(root, image_size=8, validation_split=0.5, seed=0)
    data = image_folder_datasets(root, image_size=8, validation_split=0.5, seed=0, dedupe=True)
    assert len(data.report.dropped) == 6
    assert data.num_examples == {"train": 9, "validation": 9}
    assert not data.report.warnings


def test_dedupe_that_empties_a_training_class_stops(make_image_folder):
    root = make_image_folder(splits={"train": 1, "validation": 1})
    _copy(f"{root}/train/cat/000.jpg", f"{root}/validation/cat/000_again.jpg")
    with pytest.raises(ValueError, match=r"dedupe=True leaves no training images of class\(es\) "
                                         r"\['cat'\]"):
        image_folder_datasets(root, dedupe=True)
    with pytest.raises(ValueError, match="dedupe must be True or False.*'yes'"):
        image_folder_datasets(root, dedupe="yes")


def test_class_counts_and_imbalance_are_reported(tmp_path):
    from conftest import write_class_images

    write_class_images(str(tmp_path / "common"), 0, 40)
    write_class_images(str(tmp_path / "rare"), 1, 1)
    write_class_images(str(tmp_path / "usual"), 2, 20)
    with pytest.warns(UserWarning, match=r"Class imbalance: 1 class\(es\) have under 5% of the "
                                         r"training images of the largest class \(40\): "
                                         r"'rare' \(1\)"):
        data = image_folder_datasets(str(tmp_path), image_size=8)
    assert data.report.counts == {"train": [40, 1, 20]}
    lines = data.report.summary().splitlines()
    assert lines[0].split() == ["class", "train"]
    assert lines[1].split() == ["common", "40"] and lines[2].split() == ["rare", "1"]
    assert lines[4].split() == ["total", "61"]
    assert lines[5].startswith("warning: Class imbalance")
    assert not data.report.ok and "warnings=1" in repr(data.report)


def test_report_helpers_are_pure():
    from kerasrecipes.data.scan import (
        balance_warnings, class_counts, dedupe_plan, find_duplicates,
    )

    items = [("train", "a/1", 0), ("train", "a/2", 0), ("validation", "v/1", 0),
             ("train", "b/1", 1), ("test", "t/1", 1), ("validation", "v/2", 1)]
    digests = {"a/1": "x", "a/2": "x", "v/1": "x", "b/1": "y", "t/1": "y", "v/2": "y"}
    groups = find_duplicates(items, digests)
    assert groups == [[("train", "a/1", 0), ("train", "a/2", 0), ("validation", "v/1", 0)],
                      [("train", "b/1", 1), ("test", "t/1", 1), ("validation", "v/2", 1)]]
    assert sorted(p for p, _ in dedupe_plan(groups)) == ["a/1", "a/2", "b/1", "v/2"]
    assert find_duplicates(items, {}) == []
    counts = class_counts(items, ["a", "b", "c"])
    assert counts == {"train": [2, 1, 0], "validation": [1, 1, 0], "test": [0, 1, 0]}
    messages = balance_warnings(counts, ["a", "b", "c"], ratio=0.6)
    assert messages[0].startswith("Class imbalance: 2 class(es)")  # b (1 < 0.6 * 2) and c (0)
    assert "The validation split has no images of 1 class(es): ['c']" in messages[1]
    assert "The test split has no images of 2 class(es): ['a', 'c']" in messages[2]


def test_decode_budget_bounds_what_threads_hold_at_once():
    import threading
    import time

    from kerasrecipes.data.scan import DecodeBudget

    budget = DecodeBudget(100)
    peak, lock = [0], threading.Lock()

    def work(amount):
        with budget.hold(amount):
            with lock:
                peak[0] = max(peak[0], budget.used)
            time.sleep(0.02)

    threads = [threading.Thread(target=work, args=(a,)) for a in (60, 60, 30, 30, 500, 10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] <= 100  # 500 is capped at the whole budget and runs alone.
    assert budget.used == 0
