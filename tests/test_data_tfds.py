"""Tests for kerasrecipes.data.tfds (mocked tfds: never the network)."""

import numpy as np
import pytest
import tensorflow as tf

from kerasrecipes.data import tfds_datasets


@pytest.mark.parametrize("name", ["cifar10", "mnist", "tf_flowers"])
def test_tfds_datasets_mocked(name):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=6):
        data = tfds_datasets(name, image_size=(20, 24), batch_size=4, splits=("train", "test"),
                             seed=0)
        label_feature = tfds.builder(name).info.features["label"]
        assert data.class_names == label_feature.names
        assert data.num_examples == {"train": 6, "validation": 6}
        assert data.test is None
        images, labels = next(iter(data.train))
        assert images.shape == (4, 20, 24, 3) and images.dtype == tf.uint8
        assert labels.dtype == tf.int32
        assert 0 <= labels.numpy().min() and labels.numpy().max() < len(data.class_names)
        if name == "mnist":  # Grayscale, repeated into RGB.
            np.testing.assert_array_equal(images[..., 0], images[..., 2])
        if name == "tf_flowers":  # Class names written in the builder's code.
            assert data.class_names[:2] == ["dandelion", "daisy"]
        assert sum(int(y.shape[0]) for _, y in data.validation) == 6


def test_tfds_datasets_three_splits_default_splits_and_errors():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=3):
        data = tfds_datasets("beans", image_size=8, batch_size=2,
                             splits=("train", "validation", "test"))
        assert data.class_names == ["angular_leaf_spot", "bean_rust", "healthy"]
        assert data.num_examples == {"train": 3, "validation": 3, "test": 3}
        assert next(iter(data.test))[0].shape == (2, 8, 8, 3)
        data = tfds_datasets("mnist", image_size=8, batch_size=2)
        assert data.num_examples == {"train": 3, "validation": 3}  # train + test.
        with pytest.raises(ValueError, match="splits must be a sequence of 1 to 3"):
            tfds_datasets("mnist", splits="train")
