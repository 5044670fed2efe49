"""Taking, counting and reading the batches of any data kerasrecipes trains on.

`as_batches` takes data the way `keras.Model.fit` does — a `tf.data.Dataset`, a
`keras.utils.PyDataset` (anything with `len` and indexing), a torch `DataLoader`, or `(x, y)`
arrays with a `batch_size` (cut into `ArrayBatches`) — and refuses anything else with a message
that says what to pass. Every recipe and tool that takes training data (`fine_tune`, `fit`,
`fit_one_cycle`, `find_lr`, `find_stage_lr`, `doctor`, `search`, `distill`) runs it first.
"""

import inspect
import math

import keras
import numpy as np

from kerasrecipes.validate import check_int

INFINITE = -1
DEFAULT_BATCH_SIZE = 32  # keras.Model.fit's for arrays

_WHAT_TO_PASS = (
    "a tf.data.Dataset or keras.utils.PyDataset of (images, labels) batches, or (x, y) arrays "
    "with batch_size= (like keras.Model.fit)"
)


class ArrayBatches(keras.utils.PyDataset):
    """`(x, y)` arrays in batches of `batch_size`, as `keras.Model.fit` cuts them.

    The last batch may be smaller. With `shuffle`, the rows are drawn in a new order every epoch
    (`on_epoch_end`, which Keras calls), from a generator seeded off NumPy's global one, so
    `keras.utils.set_random_seed` makes it repeatable.

    Args:
        x: array `[N, ...]`.
        y: array `[N, ...]`, a dict task → array (a multi-task model) or a tuple of arrays
            (e.g. `(labels, teacher_probs)` for `kr.distill`).
        batch_size: int >= 1. Defaults to `32`.
        shuffle: bool. Defaults to `False`.
    """

    def __init__(self, x, y, batch_size=DEFAULT_BATCH_SIZE, shuffle=False):
        super().__init__()
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self._rng = np.random.default_rng(np.random.randint(2**31 - 1))
        self._order = None
        self.on_epoch_end()

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        if self._order is not None:
            rows = self._order[rows]
        return self.x[rows], _rows(self.y, rows)

    def on_epoch_end(self):
        if self.shuffle:
            self._order = self._rng.permutation(len(self.x))


def _rows(y, rows):
    if isinstance(y, dict):
        return {task: values[rows] for task, values in y.items()}
    if isinstance(y, tuple):
        return tuple(values[rows] for values in y)
    return y[rows]


def as_batches(data, batch_size=None, name="train", shuffle=False, allow_none=False,
               batched_ok=None):
    """The data of a recipe, taken the way `keras.Model.fit` takes it; refused with what to pass.

    Args:
        data: a `tf.data.Dataset` of `(x, y)` (or `(x, y, sample_weight)`) batches, a
            `keras.utils.PyDataset` (or anything with `len` and indexing giving batches), a
            torch `DataLoader`, or an `(x, y)` tuple of arrays (NumPy or tensors; `y` may be a
            dict task → labels or a tuple of arrays), cut into `ArrayBatches` of `batch_size`.
        batch_size: optional int >= 1. For arrays only, as in `keras.Model.fit`: batched data
            with a `batch_size` is an error (unless `batched_ok`). Defaults to `None` (32 for
            arrays).
        name: str. The argument's name in messages. Defaults to `"train"`.
        shuffle: bool. Reshuffle arrays every epoch (as `fit` does with arrays). Defaults to
            `False`.
        allow_none: bool. Whether `None` passes (optional validation data). Defaults to `False`.
        batched_ok: optional bool. Accept `batch_size` with batched data (it then applies to
            other, array, arguments). Defaults to `allow_none` (validation data).

    Returns:
        The dataset as given, or `ArrayBatches` for arrays (`None` for `None` when allowed).

    Raises:
        ValueError: naming the argument, what it received and what to pass instead: a
            generator (read once, but kerasrecipes reads the data more than once), an
            `ImageData` (pass its `.train`), an array without labels, arrays of different
            lengths, dict batches of a tf.data dataset, or anything else.

    Example:
    >>> train = as_batches((x_train, y_train), batch_size=64, shuffle=True)
    >>> len(train), train[0][0].shape  # (ceil(N / 64), (64, 32, 32, 3))
    """
    check_int("batch_size", batch_size, low=1, allow_none=True)
    batched_ok = allow_none if batched_ok is None else batched_ok
    if data is None:
        if allow_none:
            return None
        raise ValueError(f"{name} is None: pass {_WHAT_TO_PASS}.")
    if isinstance(data, (tuple, list)):
        return _array_batches(data, batch_size, name, shuffle)
    kind = _batched_kind(data, name)
    if batch_size is not None and not batched_ok:
        raise ValueError(
            f"batch_size applies to (x, y) arrays; {name} is a {kind}, already in batches: drop "
            f"batch_size (or re-batch the dataset yourself). Received: batch_size={batch_size}"
        )
    return data


def _batched_kind(data, name):
    """What kind of batched data `data` is, or a `ValueError` saying what to pass instead."""
    if hasattr(data, "element_spec") and hasattr(data, "cardinality"):  # tf.data
        spec = data.element_spec
        if isinstance(spec, dict):
            raise ValueError(
                f"{name} is a tf.data.Dataset of dicts (keys {sorted(spec)}); kerasrecipes "
                "trains on (images, labels) batches: map it, e.g. "
                "dataset.map(lambda d: (d['image'], d['label'])), or load it with "
                "tfds.load(..., as_supervised=True).")
        if not isinstance(spec, tuple) or len(spec) not in (2, 3):
            raise ValueError(
                f"{name} is a tf.data.Dataset whose elements are not (images, labels) pairs "
                f"(element_spec {spec}): map each element to an (images, labels) tuple, then "
                ".batch(32).")
        return "tf.data.Dataset"
    if isinstance(data, keras.utils.PyDataset):
        return "keras.utils.PyDataset"
    if type(data).__module__.startswith("torch.utils.data"):
        return "torch DataLoader"
    if hasattr(data, "class_names") and hasattr(data, "train") and hasattr(data, "validation"):
        raise ValueError(
            f"{name} is an ImageData (train, validation and test sets together): pass its "
            f"{name if name in ('train', 'validation') else 'train'} split, e.g. "
            "kr.fine_tune(model, data.train, data.validation).")
    if isinstance(data, np.ndarray) or hasattr(data, "shape"):
        raise ValueError(
            f"{name} must be a dataset of (images, labels) batches or an (images, labels) tuple "
            f"of arrays; it is one array of shape {tuple(data.shape)} without labels: pass "
            f"(x, y) with batch_size=, e.g. fit(model, (x, y), batch_size=32).")
    if inspect.isgenerator(data) or (hasattr(data, "__next__") and iter(data) is data):
        raise ValueError(
            f"{name} is a generator (or an iterator), which can be read only once; kerasrecipes "
            "reads the data more than once (a first batch to check it, then every epoch). Wrap "
            "it in a keras.utils.PyDataset, or use tf.data.Dataset.from_generator(...).")
    if hasattr(data, "__getitem__") and hasattr(data, "__len__") and not isinstance(
            data, (str, bytes, dict)):
        return type(data).__name__  # a Sequence-like of batches
    raise ValueError(f"{name} must be {_WHAT_TO_PASS}. Received: {type(data).__name__}.")


def _array_batches(data, batch_size, name, shuffle):
    """`(x, y)` arrays → `ArrayBatches`, after checking them."""
    if len(data) != 2:
        extra = (" (sample weights are not supported: fold them into the loss, or use a "
                 "tf.data.Dataset of (x, y, sample_weight))" if len(data) == 3 else "")
        raise ValueError(
            f"{name} as arrays must be an (x, y) pair; received a {type(data).__name__} of "
            f"{len(data)} items{extra}. Or pass {_WHAT_TO_PASS}.")
    x, y = data
    x = _to_numpy(x, f"{name}[0] (x)")

    def check(values, what):
        values = _to_numpy(values, what)
        if len(values) != len(x):
            raise ValueError(
                f"{name}: x has {len(x)} samples but {what} has {len(values)}: they must match, "
                "one label per image.")
        return values

    if isinstance(y, dict):
        y = {task: check(v, f"{name}[1][{task!r}] (y)") for task, v in y.items()}
    elif isinstance(y, (tuple, list)) and y and all(hasattr(v, "shape") for v in y):
        y = tuple(check(v, f"{name}[1][{i}] (y)") for i, v in enumerate(y))
    else:
        y = check(y, f"{name}[1] (y)")
    if len(x) == 0:
        raise ValueError(f"{name} is empty: x and y have 0 samples.")
    return ArrayBatches(x, y, DEFAULT_BATCH_SIZE if batch_size is None else batch_size,
                        shuffle=shuffle)


def _to_numpy(values, what):
    if isinstance(values, np.ndarray):
        array = values
    elif hasattr(values, "shape"):  # a tensor of a backend
        array = np.asarray(keras.ops.convert_to_numpy(values))
    elif isinstance(values, (list, tuple)):
        array = np.asarray(values)
    else:
        raise ValueError(f"{what} must be an array. Received: {type(values).__name__}.")
    if array.ndim == 0:
        raise ValueError(f"{what} must be an array with one row per sample. Received a scalar.")
    return array


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


