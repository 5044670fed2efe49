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
