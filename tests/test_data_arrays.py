"""Tests for kerasrecipes.data.arrays: in-memory arrays, with and without TensorFlow."""

import numpy as np
import pytest

from kerasrecipes.data import arrays as krarrays
from kerasrecipes.data import array_datasets


def test_array_datasets_batches(tiny_images):
    x, y = tiny_images
    data = array_datasets(x, y, batch_size=3, seed=0, class_names=["no", "yes"])
    assert data.class_names == ["no", "yes"] and data.image_size == (32, 32)
    batches = list(data.train)
    assert [int(b[1].shape[0]) for b in batches] == [3, 3, 2]
    images = np.concatenate([b[0].numpy() for b in batches])
    labels = np.concatenate([b[1].numpy() for b in batches])
    assert images.dtype == np.uint8 and labels.dtype == np.int32
    # Shuffled, but every (image, label) pair intact.
    order = [int(np.flatnonzero((x == im).all(axis=(1, 2, 3)))[0]) for im in images]
    assert sorted(order) == list(range(8)) and order != list(range(8))
    np.testing.assert_array_equal(labels, y[order])


def test_array_datasets_split_and_conversions(tiny_images):
    x, y = tiny_images
    data = array_datasets(x.astype(np.float32), y, validation_split=0.25, seed=1, batch_size=8)
    assert data.num_examples == {"train": 6, "validation": 2}
    val_x, val_y = next(iter(data.validation))
    assert sorted(val_y.numpy().tolist()) == [0, 1]
    gray = array_datasets(x[..., 0], y, image_size=16, batch_size=8)
    images, _ = next(iter(gray.train))
    assert images.shape == (8, 16, 16, 3)
    np.testing.assert_array_equal(images[..., 0], images[..., 1])


def test_array_datasets_without_tensorflow_gives_pydataset(tiny_images, monkeypatch):
    import keras

    x, y = tiny_images
    with_tf = array_datasets(x, y, x_val=x[:5], y_val=y[:5], batch_size=3, seed=0)
    monkeypatch.setattr(krarrays, "optional_tensorflow", lambda: None)
    data = array_datasets(x, y, x_val=x[:5], y_val=y[:5], batch_size=3, seed=0)
    assert isinstance(data.train, keras.utils.PyDataset)
    assert len(data.train) == 3 and len(data.validation) == 2
    for (a, b), (c, d) in zip(with_tf.validation, (data.validation[i] for i in range(2))):
        np.testing.assert_array_equal(a.numpy(), c)
        np.testing.assert_array_equal(b.numpy(), d)
    first = np.concatenate([data.train[i][1] for i in range(3)])
    assert sorted(first) == sorted(y)
    orders = []
    for _ in range(3):
        orders.append(np.concatenate([data.train[i][0] for i in range(3)]))
        data.train.on_epoch_end()
    assert not all(np.array_equal(orders[0], o) for o in orders[1:])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"x_train": np.random.rand(4, 8, 8, 3)}, "floats in \\[0, 1\\].*x_train \\* 255"),
        ({"x_train": np.full((4, 8, 8, 3), 300.0)}, "must hold pixel values in \\[0, 255\\]"),
        ({"x_train": np.zeros((4, 8, 8, 3), np.int16) - 1}, "x_train must hold pixel values"),
        ({"x_train": np.zeros((4, 8, 8, 2), np.uint8)}, "x_train.shape=\\(4, 8, 8, 2\\)"),
        ({"y_train": [0, 1, 0]}, "same length.*len\\(y_train\\)=3, len\\(x_train\\)=4"),
        ({"y_train": np.eye(2)[[0, 1, 0, 1]]}, "argmax"),
        ({"y_train": [0, 1, -1, 0]}, "y_train must be >= 0.*-1"),
        ({"y_train": [0.5, 1, 0, 1]}, "integer class indices"),
        ({"class_names": ["a"]}, "Labels must be < len\\(class_names\\)=1.*label 1"),
        ({"x_val": np.zeros((2, 8, 8, 3), np.uint8)}, "Pass x_val and y_val together"),
        ({"x_val": np.zeros((2, 8, 8, 3), np.uint8), "y_val": [0, 1], "validation_split": 0.5},
         "either x_val/y_val or validation_split.*0.5"),
        ({"x_val": np.zeros((2, 9, 8, 3), np.uint8), "y_val": [0, 1]}, "x_val images must have"),
        ({"batch_size": -2}, "batch_size.*-2"),
        ({"validation_split": 1.5}, "validation_split.*1.5"),
    ],
)
def test_array_datasets_errors(kwargs, match):
    args = {"x_train": np.zeros((4, 8, 8, 3), np.uint8), "y_train": [0, 1, 0, 1], **kwargs}
    with pytest.raises(ValueError, match=match):
        array_datasets(**args)
