"""Tests for kerasrecipes.data.folders and .layout: layouts, splits, batches, clear errors."""

import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import class_color
from kerasrecipes.data import image_folder_datasets


def test_class_layout_batches(image_folder):
    data = image_folder_datasets(image_folder, image_size=(16, 20), batch_size=5, seed=0)
    assert data.class_names == ["cat", "dog", "fox"]
    assert data.image_size == (16, 20)
    assert data.validation is None and data.test is None
    batches = list(data.train)
    assert [int(y.shape[0]) for _, y in batches] == [5, 5, 2]
    assert int(data.train.cardinality()) == 3
    images, labels = batches[0]
    assert images.dtype == tf.uint8 and labels.dtype == tf.int32
    assert images.shape == (5, 16, 20, 3)
    # Each image still shows its class colour after decoding and resizing.
    for image, label in zip(images.numpy(), labels.numpy()):
        np.testing.assert_allclose(image.reshape(-1, 3).mean(0), class_color(label), atol=8)


def test_validation_split_is_stratified_and_seeded(make_image_folder):
    root = make_image_folder(per_class=10)
    data = image_folder_datasets(root, image_size=8, validation_split=0.2, seed=3)
    assert data.num_examples == {"train": 24, "validation": 6}
    val_labels = [label for _, label in data.files["validation"]]
    assert sorted(val_labels) == [0, 0, 1, 1, 2, 2]
    assert not set(data.files["train"]) & set(data.files["validation"])
    again = image_folder_datasets(root, image_size=8, validation_split=0.2, seed=3)
    assert again.files == data.files
    others = [image_folder_datasets(root, image_size=8, validation_split=0.2, seed=s).files
              for s in (4, 5, 6)]
    assert any(o["validation"] != data.files["validation"] for o in others)


def test_train_order_is_seeded_and_reshuffled_each_epoch(image_folder):
    def epochs(cache):
        data = image_folder_datasets(image_folder, image_size=8, batch_size=12, seed=7,
                                     cache=cache)
        return [next(iter(data.train))[0].numpy() for _ in range(2)]

    for cache in (False, True):
        first, second = epochs(cache)
        again_first, again_second = epochs(cache)
        np.testing.assert_array_equal(first, again_first)
        np.testing.assert_array_equal(second, again_second)
        assert not np.array_equal(first, second)
        # Same images, different order.
        assert sorted(map(bytes, first)) == sorted(map(bytes, second))


def test_split_layout_with_val_alias(make_image_folder):
    root = make_image_folder(splits={"train": 4, "val": 2, "test": 1})
    data = image_folder_datasets(root, image_size=8, batch_size=4)
    assert data.class_names == ["cat", "dog", "fox"]
    assert data.num_examples == {"train": 12, "validation": 6, "test": 3}
    labels = np.concatenate([y.numpy() for _, y in data.validation])
    np.testing.assert_array_equal(labels, [0, 0, 1, 1, 2, 2])  # Not shuffled.
    assert sum(int(y.shape[0]) for _, y in data.test) == 3


def test_split_layout_validation_may_lack_a_class_and_split_from_train(make_image_folder):
    root = make_image_folder(splits={"train": 4})
    write_dir = os.path.join(root, "validation", "dog")
    os.makedirs(write_dir)
    Image.new("RGB", (8, 8)).save(os.path.join(write_dir, "x.png"))
    data = image_folder_datasets(root, image_size=8)
    assert data.num_examples == {"train": 12, "validation": 1}
    assert data.files["validation"][0][1] == 1

    only_train = make_image_folder(name="only_train", splits={"train": 5})
    data = image_folder_datasets(only_train, image_size=8, validation_split=0.2, seed=0)
    assert data.num_examples == {"train": 12, "validation": 3}


def test_class_names_fix_the_label_order(image_folder):
    data = image_folder_datasets(image_folder, image_size=8, class_names=["fox", "cat", "dog"])
    assert data.class_names == ["fox", "cat", "dog"]
    labels = {os.path.basename(os.path.dirname(p)): l for p, l in data.files["train"]}
    assert labels == {"fox": 0, "cat": 1, "dog": 2}


def test_cache_to_file(image_folder, tmp_path):
    cache = str(tmp_path / "cache" / "photos")
    os.makedirs(os.path.dirname(cache))
    data = image_folder_datasets(image_folder, image_size=8, batch_size=4, cache=cache, seed=0)
    for _ in range(2):
        assert sum(int(y.shape[0]) for _, y in data.train) == 12
    assert any(f.startswith("photos_train") for f in os.listdir(os.path.dirname(cache)))


def test_crop_to_aspect_ratio_in_pipeline(tmp_path):
    for cls in ("a", "b"):
        os.makedirs(tmp_path / cls)
        pixels = np.zeros((10, 20, 3), np.uint8)
        pixels[:, :5], pixels[:, 5:15], pixels[:, 15:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
        Image.fromarray(pixels).save(tmp_path / cls / "bands.png")
    data = image_folder_datasets(str(tmp_path), image_size=6, crop_to_aspect_ratio=True)
    images, _ = next(iter(data.train))
    np.testing.assert_array_equal(images.numpy(), np.full((2, 6, 6, 3), (0, 255, 0), np.uint8))


# ---------------------------------------------------------------------------------------------
# Clear errors.


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"validation_split": 0.0}, "validation_split must be a float in \\(0, 1\\).*=0.0"),
        ({"validation_split": 1.0}, "validation_split.*=1.0"),
        ({"validation_split": "0.1"}, "validation_split.*'0.1'"),
        ({"on_bad_file": "ignore"}, "on_bad_file must be 'skip' or 'raise'.*'ignore'"),
        ({"image_size": 0}, "image_size.*=0"),
        ({"image_size": (32,)}, "image_size.*\\(32,\\)"),
        ({"image_size": (32, -1)}, "image_size.*\\(32, -1\\)"),
        ({"image_size": "big"}, "image_size.*'big'"),
        ({"image_size": 3.5}, "image_size.*3.5"),
        ({"batch_size": 0}, "batch_size must be an int >= 1.*=0"),
        ({"cache": 1.5}, "cache.*1.5"),
        ({"class_names": ["cat", "dog"]}, "class_names must name each class folder"),
    ],
)
def test_bad_arguments(image_folder, kwargs, match):
    with pytest.raises(ValueError, match=match):
        image_folder_datasets(image_folder, **kwargs)


def test_folder_errors(tmp_path, make_image_folder):
    with pytest.raises(ValueError, match="does not exist.*nowhere"):
        image_folder_datasets(str(tmp_path / "nowhere"))
    Image.new("RGB", (4, 4)).save(tmp_path / "loose.jpg")
    with pytest.raises(ValueError, match="is a file"):
        image_folder_datasets(str(tmp_path / "loose.jpg"))
    with pytest.raises(ValueError, match="No class folders.*1 image files directly"):
        image_folder_datasets(str(tmp_path))

    empty = tmp_path / "empty"
    os.makedirs(empty / "cat")
    os.makedirs(empty / "dog")
    (empty / "cat" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="cat.*has no image files"):
        image_folder_datasets(str(empty))

    single = make_image_folder(name="single", classes=("cat",))
    with pytest.raises(ValueError, match="single class folder \\['cat'\\]"):
        image_folder_datasets(single)


def test_split_layout_errors(make_image_folder):
    root = make_image_folder(splits={"train": 2, "validation": 1})
    extra = os.path.join(root, "validation", "owl")
    os.makedirs(extra)
    Image.new("RGB", (4, 4)).save(os.path.join(extra, "x.png"))
    with pytest.raises(ValueError, match="class folders the train split lacks: \\['owl'\\]"):
        image_folder_datasets(root)

    root = make_image_folder(name="with_val", splits={"train": 2, "val": 1})
    with pytest.raises(ValueError, match="already has a validation folder.*validation_split=0.1"):
        image_folder_datasets(root, validation_split=0.1)

    root = make_image_folder(name="mixed", splits={"train": 2, "cats": 1})
    with pytest.raises(ValueError, match="mixes split folders.*\\['cats'\\]"):
        image_folder_datasets(root)

    root = make_image_folder(name="twice", splits={"train": 2, "val": 1, "validation": 1})
    with pytest.raises(ValueError, match="two folders for the 'validation' split"):
        image_folder_datasets(root)


# ---------------------------------------------------------------------------------------------
# Unusual folders: each works as documented or stops before training, naming the folder/file.


def _counts(data):
    return {split: dict(zip(data.class_names, c)) for split, c in data.report.counts.items()}


def test_images_next_to_the_class_folders_are_left_out_with_a_warning(image_folder,
                                                                      make_image_folder):
    Image.new("RGB", (8, 8)).save(os.path.join(image_folder, "cover.jpg"))
    with pytest.warns(UserWarning, match=r"1 image file\(s\) lie outside any class folder.*"
                                         r"cover\.jpg.*Move each into the folder of its class"):
        data = image_folder_datasets(image_folder, image_size=8)
    assert data.num_examples == {"train": 12}
    assert data.report.ignored == [os.path.join(image_folder, "cover.jpg")]

    root = make_image_folder(name="splits", splits={"train": 2, "validation": 1})
    Image.new("RGB", (8, 8)).save(os.path.join(root, "stray.png"))
    Image.new("RGB", (8, 8)).save(os.path.join(root, "validation", "stray2.png"))
    with pytest.warns(UserWarning, match=r"2 image file\(s\) lie outside"):
        data = image_folder_datasets(root, image_size=8)
    assert data.num_examples == {"train": 6, "validation": 3}
    assert [os.path.basename(p) for p in data.report.ignored] == ["stray.png", "stray2.png"]


def test_nested_folders_belong_to_their_class(image_folder):
    from conftest import write_class_images

    write_class_images(os.path.join(image_folder, "cat", "2023", "summer"), 0, 3, seed=5)
    data = image_folder_datasets(image_folder, image_size=8)
    assert _counts(data)["train"] == {"cat": 7, "dog": 4, "fox": 4}
    nested = [p for p, label in data.files["train"] if "summer" in p]
    assert len(nested) == 3 and {label for p, label in data.files["train"] if p in nested} == {0}


def test_hidden_and_tool_folders_are_ignored(image_folder, recwarn):
    from conftest import write_class_images

    # Jupyter, macOS zip and Synology leftovers: neither classes nor images of a class.
    write_class_images(os.path.join(image_folder, ".ipynb_checkpoints"), 0, 2)
    write_class_images(os.path.join(image_folder, "__MACOSX", "cat"), 0, 2)
    write_class_images(os.path.join(image_folder, "cat", ".ipynb_checkpoints"), 1, 2)
    write_class_images(os.path.join(image_folder, "dog", "@eaDir", "000.jpg"), 1, 2)
    write_class_images(os.path.join(image_folder, "fox", ".hidden"), 2, 2)
    data = image_folder_datasets(image_folder, image_size=8)
    assert data.class_names == ["cat", "dog", "fox"]
    assert data.num_examples == {"train": 12}
    assert not [w for w in recwarn if "outside any class" in str(w.message)]


def test_symlinks_are_followed_and_a_loop_is_skipped(image_folder, tmp_path):
    from conftest import write_class_images

    elsewhere = write_class_images(str(tmp_path / "elsewhere"), 0, 2, seed=9)
    os.symlink(elsewhere[0], os.path.join(image_folder, "cat", "linked.jpg"))
    os.symlink(str(tmp_path / "elsewhere"), os.path.join(image_folder, "fox", "more"))
    os.symlink("..", os.path.join(image_folder, "dog", "loop"))  # dog/loop/loop/... forever
    with pytest.warns(UserWarning, match=r"Skipped the folder link .*dog/loop.*symbolic-link "
                                         r"loop"):
        data = image_folder_datasets(image_folder, image_size=8)
    assert _counts(data)["train"] == {"cat": 5, "dog": 4, "fox": 6}
    assert data.report.warnings and any("loop" in w for w in data.report.warnings)


def test_broken_links_are_named_like_unreadable_files(image_folder):
    cat = os.path.join(image_folder, "cat")
    os.symlink(os.path.join(cat, "gone.jpg"), os.path.join(cat, "broken.jpg"))
    os.symlink(os.path.join(cat, "b.jpg"), os.path.join(cat, "a.jpg"))
    os.symlink(os.path.join(cat, "a.jpg"), os.path.join(cat, "b.jpg"))
    with pytest.warns(UserWarning, match=r"Skipped 3 unreadable"):
        data = image_folder_datasets(image_folder, image_size=8)
    reasons = {os.path.basename(p): r for p, r in data.skipped}
    assert reasons["broken.jpg"].startswith("broken symbolic link to")
    assert "gone.jpg" in reasons["broken.jpg"]
    assert reasons["a.jpg"].startswith("symbolic link loop")
    assert data.num_examples == {"train": 12}


def _running_as_root():
    return hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.mark.skipif(_running_as_root(), reason="root reads files whatever their permissions; "
                    "test_unreadable_file_is_named_by_injection covers it")
def test_unreadable_file_is_named(image_folder):
    victim = os.path.join(image_folder, "dog", "000.jpg")
    os.chmod(victim, 0)
    try:
        with pytest.raises(ValueError, match=r"(?s)1 image file.*dog/000\.jpg: permission denied"):
            image_folder_datasets(image_folder, on_bad_file="raise")
    finally:
        os.chmod(victim, 0o644)


def test_unreadable_file_is_named_by_injection(image_folder, monkeypatch):
    import builtins

    from kerasrecipes.data import scan

    victim = os.path.join(image_folder, "dog", "000.jpg")

    def guarded_open(path, *args, **kwargs):
        if os.fspath(path) == victim:
            raise PermissionError(13, "Permission denied", victim)
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(scan, "open", guarded_open, raising=False)
    with pytest.raises(ValueError, match=r"(?s)1 image file.*dog/000\.jpg: permission denied: "
                                         r"this user cannot read the file"):
        image_folder_datasets(image_folder, on_bad_file="raise")
    with pytest.warns(UserWarning, match="Skipped 1 unreadable"):
        data = image_folder_datasets(image_folder, image_size=8)
    assert data.num_examples == {"train": 11}


def test_unreadable_folder_stops_with_its_name(image_folder, monkeypatch):
    blocked = os.path.join(image_folder, "cat", "private")
    os.makedirs(blocked)
    Image.new("RGB", (8, 8)).save(os.path.join(blocked, "x.png"))
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path) == blocked:
            raise PermissionError(13, "Permission denied", blocked)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(ValueError, match=r"Cannot read the folder .*cat/private.*Permission "
                                         r"denied.*would be left out"):
        image_folder_datasets(image_folder, image_size=8)

    def listdir(path="."):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(os, "listdir", listdir)
    with pytest.raises(ValueError, match=r"Cannot read the folder .*photos.*permission denied"):
        image_folder_datasets(image_folder, image_size=8)


def test_file_names_with_spaces_quotes_newlines_and_other_scripts(tmp_path):
    names = ["with space.jpg", "quote's \"double\".png", "new\nline.jpg", "café ☕ 猫.png",
             "tab\there.jpg"]
    root = tmp_path / "odd names"
    for label, cls in enumerate(["a b", "é"]):
        os.makedirs(root / cls)
        for i, name in enumerate(names):
            Image.new("RGB", (8 + i, 8), class_color(label)).save(root / cls / name)
    # A name that is not valid UTF-8 (Latin-1 bytes), as old archives leave them.
    raw = os.path.join(os.fsencode(str(root / "é")), b"caf\xe9.png")
    Image.new("RGB", (8, 8), class_color(1)).save(raw, format="PNG")
    (root / "a b" / "bad\nname.jpg").write_text("not an image")
    with pytest.warns(UserWarning, match=r"'.*bad\\nname\.jpg': not an image"):
        data = image_folder_datasets(str(root), image_size=8, batch_size=4)
    assert data.class_names == ["a b", "é"]
    assert data.num_examples == {"train": 11}
    batches = list(data.train)
    labels = np.concatenate([y.numpy() for _, y in batches])
    images = np.concatenate([x.numpy() for x, _ in batches])
    assert sorted(labels.tolist()) == [0] * 5 + [1] * 6
    for image, label in zip(images, labels):
        np.testing.assert_allclose(image.reshape(-1, 3).mean(0), class_color(label), atol=2)


def test_validation_missing_a_class_warns_and_an_extra_class_stops(make_image_folder):
    root = make_image_folder(splits={"train": 3, "validation": 1})
    import shutil

    shutil.rmtree(os.path.join(root, "validation", "fox"))
    with pytest.warns(UserWarning, match=r"The validation split has no images of 1 class\(es\): "
                                         r"\['fox'\]"):
        data = image_folder_datasets(root, image_size=8)
    assert _counts(data)["validation"] == {"cat": 1, "dog": 1, "fox": 0}
    os.makedirs(os.path.join(root, "validation", "owl"))
    with pytest.raises(ValueError, match=r"validation folder .* has class folders the train "
                                         r"split lacks: \['owl'\]"):
        image_folder_datasets(root)
