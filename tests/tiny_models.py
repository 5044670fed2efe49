"""A tiny registered-style backbone for fast training tests (stem / stage1 / stage2 / top)."""

import keras

from kerasrecipes.backbones import TF_STYLE, BackboneSpec


def _tiny_constructor(input_shape, weights):
    inputs = keras.Input(input_shape)
    x = inputs
    for name, filters, strides in (("stem", 4, 1), ("stage1", 8, 2), ("stage2", 8, 2), ("top", 16, 1)):
        x = keras.layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False,
                                name=f"{name}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
        x = keras.layers.Activation("relu", name=f"{name}_relu")(x)
    model = keras.Model(inputs, x)
    if weights not in (None, "imagenet"):
        model.load_weights(weights)
    return model


TINY = BackboneSpec(
    name="tiny_test_net",
    constructor=_tiny_constructor,
    image_size=16,
    preprocessing=TF_STYLE,
    layer_groups=(("stem", r"^stem_"), ("stage1", r"^stage1_"), ("stage2", r"^stage2_"),
                  ("top", r"^top_")),
    source="tests",
)


def tiny_arrays(n=16, size=16, num_classes=3, seed=0):
    """`(uint8 images, int32 labels)` whose class is visible in the pixels (learnable)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % num_classes).astype("int32")
    images = rng.integers(0, 60, (n, size, size, 3)).astype("uint8")
    for i, label in enumerate(labels):
        images[i, :, :, label % 3] += 150
    return images, labels


def tiny_dataset(n=16, size=16, num_classes=3, batch_size=8, seed=0):
    """A tf.data dataset of `tiny_arrays` batches."""
    import tensorflow as tf

    images, labels = tiny_arrays(n, size, num_classes, seed)
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size)


def tiny_batches(n=16, size=16, num_classes=3, batch_size=8, seed=0):
    """The batches of `tiny_dataset` as a `keras.utils.PyDataset`: no TensorFlow needed."""
    import math

    images, labels = tiny_arrays(n, size, num_classes, seed)

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return math.ceil(n / batch_size)

        def __getitem__(self, index):
            if not 0 <= index < len(self):
                raise IndexError(index)
            part = slice(index * batch_size, (index + 1) * batch_size)
            return images[part], labels[part]

    return Batches()


def tiny_resnet():
    """A seeded 2-block ResNet at 16 px, normalised on `tiny_dataset` images."""
    import keras
    import numpy as np

    import kerasrecipes as kr

    keras.utils.set_random_seed(0)
    images = np.concatenate([x for x, _ in tiny_dataset(n=32)])
    return kr.build_resnet(3, depth=("basic", (1, 1)), image_size=16, filters=4,
                           normalization_data=images)
