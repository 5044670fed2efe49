"""The head stage on cached backbone features: run the frozen backbone once, not every epoch.

While the backbone is frozen (its BatchNorm in inference mode), the features it gives an image never
change, so `fine_tune`'s first stage can compute them once — `preprocess` → `backbone` → the head's
global pooling, in inference mode — and train the rest of the head on those pooled features. The
head's own layers are trained in place: the model keeps its structure, its export and its weights
format. The features are those of the un-augmented images: the model's `augment` sub-model is
skipped in this stage (the head's dropout still trains it as usual).

A head epoch then costs a fraction of a second instead of a forward pass (and the augmentation) of
every image; the features themselves cost one forward pass in inference mode.
"""

import math

import keras
import numpy as np

from kerasrecipes.batches import first_batch, num_batches

_POOLING = (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D,
            keras.layers.GlobalAveragePooling1D, keras.layers.GlobalMaxPooling1D)
# Above this many cached float32 values (4 GB), the head stage runs on images.
MAX_CACHED_VALUES = 1 << 30


def cache_refusal(model, train, callbacks=None):
    """Why the head stage of `model` on `train` should not run on cached features, or `None`.

    It can for a single-output model whose sub-models are `augment` → `preprocess` → `backbone` →
    `head`, the head starting with a global pooling layer (every `kr.build_classifier` model),
    trained on hard labels (MixUp/CutMix batches differ every epoch), without extra callbacks
    (they would see the head alone), on one device, when the features fit in memory.
    """
    from kerasrecipes.stages import has_soft_labels

    try:
        head = model.get_layer("head")
        for name in ("augment", "preprocess", "backbone"):
            model.get_layer(name)
    except ValueError:
        return "the model has no augment/preprocess/backbone/head sub-models"
    if isinstance(model.output, (dict, list, tuple)):
        return "the model has several outputs"
    layers = getattr(head, "layers", [])
    if not layers or not isinstance(layers[0], _POOLING):
        return "its head does not start with a global pooling layer"
    if callbacks:
        return "callbacks were given (they would see the head alone)"
    strategy = getattr(model, "distribute_strategy", None)
    if keras.distribution.distribution() is not None or (
            strategy is not None and strategy.num_replicas_in_sync > 1):
        return "it trains on several devices"
    if has_soft_labels(model, train):
        return "the training labels are soft (MixUp/CutMix differ every epoch)"
    batches = num_batches(train)
    if batches is not None and batches > 0:
        batch_size = len(keras.ops.convert_to_numpy(first_batch(train)[1]))
        values = batches * batch_size * math.prod(layers[0].output.shape[1:])
        if values > MAX_CACHED_VALUES:
            return f"its features ({values:,} float32 values) would not fit in memory"
    return None


def feature_extractor(model):
    """The frozen part of `model` as a model: uint8 images → pooled backbone features.

    `preprocess`, `backbone` and the head's pooling layer (the same layer objects), called in
    inference mode.
    """
    images = keras.Input(model.input_shape[1:], dtype=model.input.dtype, name="image")
    x = model.get_layer("preprocess")(images)
    x = model.get_layer("backbone")(x)
    x = model.get_layer("head").layers[0](x)
    return keras.Model(images, x, name="feature_extractor")


def feature_head(model):
    """The head's layers after its pooling, as a model on pooled features (same layer objects)."""
    head = model.get_layer("head")
    pooling = head.layers[0]
    features = keras.Input(pooling.output.shape[1:], name="features")
    x = features
    for layer in head.layers[1:]:
        x = layer(x)
    return keras.Model(features, x, name="head_on_features")


def compute_features(model, dataset, verbose=1, what="train"):
    """Pooled backbone features of every batch of `dataset` (one pass, in inference mode).

    Args:
        model: a `kr.build_classifier` model (see `cacheable`).
        dataset: batches of `(uint8 images, labels)`.
        verbose: int. Shows a progress bar when > 0. Defaults to `1`.
        what: str. Name of the split in messages. Defaults to `"train"`.

    Returns:
        `(features, labels)`: float32 `[N, D]` and the labels, stacked.
    """
    extractor = feature_extractor(model)
    features, labels, size = [], [], 0
    progress = keras.utils.Progbar(num_batches(dataset), verbose=verbose, unit_name="batch")
    for step, batch in enumerate(dataset, start=1):
        features.append(np.asarray(extractor.predict_on_batch(batch[0]), np.float32))
        labels.append(keras.ops.convert_to_numpy(batch[1]))
        size += features[-1].size
        if size > MAX_CACHED_VALUES:  # a dataset of unknown length (cache_refusal checks)
            raise MemoryError(
                f"The cached features of the {what} data pass {MAX_CACHED_VALUES:,} float32 "
                "values: run the head stage on images (cache_features=False)."
            )
        progress.update(step)
    if not features:
        raise ValueError(f"The {what} dataset is empty: it yields no batches.")
    return np.concatenate(features), np.concatenate(labels)


class FeatureBatches(keras.utils.PyDataset):
    """Batches of cached `(features, labels)`, reshuffled every epoch when `shuffle`."""

    def __init__(self, features, labels, batch_size, shuffle=False, seed=None):
        super().__init__()
        self.features, self.labels = features, labels
        self.batch_size = batch_size
        self.shuffle = shuffle
        self._rng = np.random.default_rng(seed)
        self._order = np.arange(len(features))
        self.on_epoch_end()

    def __len__(self):
        return math.ceil(len(self.features) / self.batch_size)

    def __getitem__(self, index):
        rows = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        return self.features[rows], self.labels[rows]

    def on_epoch_end(self):
        if self.shuffle:
            self._order = self._rng.permutation(len(self.features))


def head_stage_data(model, train, validation=None, verbose=1, seed=None):
    """What the head stage trains on when the backbone is frozen: `(head, train, validation)`.

    `head` is `feature_head(model)`; `train` and `validation` are `FeatureBatches` of the pooled
    features of every image, in batches as large as those of `train` (so an epoch has as many
    steps and the LR schedule is the same), the training ones reshuffled every epoch.
    """
    if verbose:
        print("[kerasrecipes] head stage on cached features: the frozen backbone runs once over "
              "the images (pass cache_features=False to run it every epoch)")
    batch_size = len(keras.ops.convert_to_numpy(first_batch(train)[1]))
    features, labels = compute_features(model, train, verbose=verbose)
    if seed is None:  # reproducible under keras.utils.set_random_seed (it seeds NumPy too)
        seed = int(np.random.randint(2**31 - 1))
    head_train = FeatureBatches(features, labels, batch_size, shuffle=True, seed=seed)
    head_validation = None
    if validation is not None:
        features, labels = compute_features(model, validation, verbose=verbose,
                                            what="validation")
        head_validation = FeatureBatches(features, labels, batch_size)
    return feature_head(model), head_train, head_validation
