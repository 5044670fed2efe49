"""Tests for kerasrecipes.batches: counting and reading batches of tf.data and PyDataset."""

import numpy as np
import pytest
import tensorflow as tf

from kerasrecipes.batches import INFINITE, epoch_steps, first_batch, num_batches, take_batches
from tiny_models import tiny_batches, tiny_dataset


def test_num_batches_of_each_kind_of_dataset():
    assert num_batches(tiny_dataset(n=20, batch_size=8)) == 3
    assert num_batches(tiny_batches(n=20, batch_size=8)) == 3
    assert num_batches(tiny_dataset().repeat()) == INFINITE
    assert num_batches(tiny_dataset().filter(lambda x, y: True)) is None
    assert num_batches(iter([1, 2])) is None


def test_epoch_steps_counts_an_unknown_length_once_and_asserts_it(capsys):
    filtered = tiny_dataset(n=20, batch_size=8).filter(lambda x, y: True)
    dataset, steps = epoch_steps(filtered)
    assert steps == 3 and "counting the training batches" in capsys.readouterr().out
    assert int(dataset.cardinality()) == 3
    assert epoch_steps(tiny_dataset().repeat(), 5)[1] == 5
    with pytest.raises(ValueError, match="repeats forever: pass steps_per_epoch"):
        epoch_steps(tiny_dataset().repeat())
    with pytest.raises(ValueError, match="steps_per_epoch must be a positive int. Received: "
                                         "steps_per_epoch=0"):
        epoch_steps(tiny_dataset(), 0)
    with pytest.raises(ValueError, match="empty"):
        epoch_steps(tiny_dataset().take(0))


def test_first_and_taken_batches_are_the_same_for_tf_data_and_pydataset():
    for data in (tiny_dataset(n=20, batch_size=8), tiny_batches(n=20, batch_size=8)):
        images, labels = first_batch(data)
        np.testing.assert_array_equal(np.asarray(images).shape, (8, 16, 16, 3))
        x, y, batch_size = take_batches(data, 2)
        assert x.shape == (16, 16, 16, 3) and y.shape == (16,) and batch_size == 8
        np.testing.assert_array_equal(x[:8], np.asarray(images))
    multi = tf.data.Dataset.from_tensor_slices(
        (np.zeros((4, 2, 2, 3), "uint8"), {"a": np.arange(4), "b": np.ones(4)})).batch(2)
    _, labels, _ = take_batches(multi, 5)
    assert set(labels) == {"a", "b"} and labels["a"].tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="batches must be a positive int"):
        take_batches(tiny_dataset(), 0)
