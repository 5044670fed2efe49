"""Counting and reading batches of any dataset kerasrecipes trains on.

`tf.data.Dataset`, `keras.utils.PyDataset` (anything with `len` and indexing) or a plain
iterable of `(images, labels)` batches.
"""

import keras
import numpy as np

INFINITE = -1


def num_batches(dataset):
    """Number of batches; None if unknown, `INFINITE` for a repeated tf.data dataset."""
    try:
        return len(dataset)
    except TypeError:
        pass
    cardinality = getattr(dataset, "cardinality", None)
    if cardinality is not None:
        n = int(cardinality())
        return n if n >= -1 else None
    return None


def epoch_steps(dataset, steps_per_epoch=None):
    """`(dataset, steps)`: the batches of one epoch, counted once when the length is unknown.

    Args:
        dataset: the training dataset.
        steps_per_epoch: optional positive int, which wins. Needed for a dataset that repeats
            forever. Defaults to `None`.

    Returns:
        The dataset (a tf.data one of unknown length gets its counted length asserted, so Keras
        and the learning-rate schedules see it) and the number of steps per epoch.
    """
    if steps_per_epoch is not None:
        if not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
            raise ValueError(
                f"steps_per_epoch must be a positive int. Received: steps_per_epoch={steps_per_epoch!r}"
            )
        return dataset, steps_per_epoch
    n = num_batches(dataset)
    if n == INFINITE:
        raise ValueError(
            "The training dataset repeats forever: pass steps_per_epoch so the learning-rate "
            "schedule knows how many steps an epoch has."
        )
    if n is None:
        # Unknown length (e.g. after `filter`): count once. A cached tf.data pipeline keeps
        # what this pass decodes, so the first epoch does not pay for it again.
        print("[kerasrecipes] counting the training batches (dataset length unknown)")
        n = sum(1 for _ in dataset)
        if n and hasattr(dataset, "cardinality"):
            import tensorflow as tf

            dataset = dataset.apply(tf.data.experimental.assert_cardinality(n))
    if n == 0:
        raise ValueError("The training dataset is empty: it yields no batches.")
    return dataset, n


def first_batch(dataset):
    """The first batch: `dataset[0]` of a `PyDataset`, else the first element iterated."""
    if hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__"):
        return dataset[0]
    return next(iter(dataset))


def take_batches(data, batches):
    """Materialises the first `batches` `(images, labels)` batches of a dataset as numpy arrays.

    Args:
        data: `tf.data.Dataset`, `keras.utils.PyDataset` or iterable of `(images, labels)`
            batches, or an `(images, labels)` tuple of arrays.
        batches: int. Number of batches.

    Returns:
        `(images, labels, batch_size)`.
    """
    if not isinstance(batches, int) or batches < 1:
        raise ValueError(f"batches must be a positive int. Received: batches={batches!r}")
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], np.ndarray):
        images, labels = data
        return np.asarray(images), labels_to_numpy(labels), len(images)
    xs, ys = [], []
    if hasattr(data, "__getitem__") and hasattr(data, "__len__") and not hasattr(data, "take"):
        iterator = (data[i] for i in range(min(batches, len(data))))
    else:
        iterator = iter(data)
    for i, batch in enumerate(iterator):
        if i >= batches:
            break
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError("data must yield (images, labels) batches.")
        xs.append(keras.ops.convert_to_numpy(batch[0]))
        ys.append(labels_to_numpy(batch[1]))
    if not xs:
        raise ValueError("data is empty: it yields no batches.")
    if isinstance(ys[0], dict):  # a multi-task model's {task: labels}
        labels = {task: np.concatenate([y[task] for y in ys]) for task in ys[0]}
    else:
        labels = np.concatenate(ys)
    return np.concatenate(xs), labels, len(xs[0])


def labels_to_numpy(labels):
    """Labels as numpy: an array, or a dict task → array for multi-task models."""
    if isinstance(labels, dict):
        return {task: np.asarray(keras.ops.convert_to_numpy(y)) for task, y in labels.items()}
    return np.asarray(keras.ops.convert_to_numpy(labels))


