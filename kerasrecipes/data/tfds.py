"""TensorFlow Datasets image-classification sets as datasets of uint8 images."""

from kerasrecipes.data.arguments import check_batch_size, check_cache
from kerasrecipes.data.decode import tf_composite_on_white, tf_resize
from kerasrecipes.data.image_data import ImageData
from kerasrecipes.data.pipeline import SHUFFLE_BUFFER
from kerasrecipes.utils import check_image_size


def tfds_datasets(
    name,
    image_size=(224, 224),
    batch_size=32,
    splits=None,
    data_dir=None,
    download=True,
    seed=None,
    cache=True,
    crop_to_aspect_ratio=False,
):
    """Builds train/validation/test datasets from a TensorFlow Datasets image-classification set.

    Images are decoded by tfds, turned into RGB (grayscale is repeated, alpha composited on
    white) and resized to uint8 `image_size`; class names come from the label's `ClassLabel`.

    Args:
        name: str. tfds name, e.g. `"cifar10"`, `"tf_flowers"` or `"mnist:3.0.1"`.
        image_size: int or `(height, width)`. Defaults to `(224, 224)`.
        batch_size: int. Defaults to `32`.
        splits: sequence of 1–3 tfds split strings used as train, validation and test, in that
            order; slicing works (`("train[:90%]", "train[90%:]", "test")`). Defaults to `None`:
            `"train"` plus `"validation"` when the set has one, else `"test"`.
        data_dir: str or `None`. Where tfds keeps its data. Defaults to `None` (tfds' default).
        download: bool. Download and prepare the data set if missing. Defaults to `True`.
        seed: int or `None`. Seeds the file and example shuffling of the train split.
            Defaults to `None`.
        cache: bool or str. As in `image_folder_datasets`. Defaults to `True`.
        crop_to_aspect_ratio: bool. As in `image_folder_datasets`. Defaults to `False`.

    Returns:
        `ImageData`; `num_examples` counts the split (slice) sizes.

    Example:

    >>> import tensorflow_datasets as tfds
    >>> with tfds.testing.mock_data(num_examples=8):
    ...     data = tfds_datasets("mnist", image_size=32, batch_size=4, splits=("train", "test"))
    >>> data.class_names[:3], data.num_examples
    (['0', '1', '2'], {'train': 8, 'validation': 8})
    """
    import tensorflow as tf
    import tensorflow_datasets as tfds

    image_size = check_image_size(image_size)
    batch_size = check_batch_size(batch_size)
    cache = check_cache(cache)
    builder = tfds.builder(name, data_dir=data_dir)
    if download:
        builder.download_and_prepare()
    info = builder.info
    if splits is None:
        available = set(info.splits.keys())
        if not available:
            # Split sizes are unknown before preparation metadata exists (e.g. under
            # `tfds.testing.mock_data`); most image sets have train and test.
            available = {"train", "test"}
        if "train" not in available:
            raise ValueError(
                f"tfds data set {name!r} has no 'train' split; pass splits=. "
                f"Available: {sorted(available)}. Received: splits=None"
            )
        splits = ("train", "validation" if "validation" in available else "test")
        splits = tuple(s for s in splits if s in available)
    if isinstance(splits, str) or not 1 <= len(splits) <= 3:
        raise ValueError(
            "splits must be a sequence of 1 to 3 split names (train, validation, test). "
            f"Received: splits={splits!r}"
        )

    image_key, label_key = _tfds_keys(info, name)
    class_names = list(info.features[label_key].names)
    datasets, counts = {}, {}
    for role, split in zip(("train", "validation", "test"), splits):
        training = role == "train"
        try:
            ds = builder.as_dataset(
                split=split,
                shuffle_files=training,
                read_config=tfds.ReadConfig(shuffle_seed=seed),
            )
        except (AssertionError, tf.errors.NotFoundError, FileNotFoundError) as e:
            raise ValueError(
                f"Cannot read split {split!r} of tfds data set {name!r} from "
                f"data_dir={data_dir!r} ({e}). Pass download=True or check the split name."
            ) from e
        n = int(ds.cardinality())
        if n < 0:
            n = info.splits[split].num_examples
        counts[role] = n

        def prepare(example):
            image = example[image_key]
            channels = image.shape[-1]
            if channels == 1:
                image = tf.image.grayscale_to_rgb(image)
            elif channels == 4:
                image = tf_composite_on_white(tf.cast(image, tf.uint16) * 257)
            image.set_shape([None, None, 3])
            image = tf_resize(image, image_size, crop_to_aspect_ratio)
            return image, tf.cast(example[label_key], tf.int32)

        ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if cache:
            ds = ds.cache("" if cache is True else f"{cache}_{role}")
        if training:
            ds = ds.shuffle(max(1, min(n, SHUFFLE_BUFFER)), seed=seed,
                            reshuffle_each_iteration=True)
        datasets[role] = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    return ImageData(
        train=datasets["train"],
        validation=datasets.get("validation"),
        test=datasets.get("test"),
        class_names=class_names,
        image_size=image_size,
        num_examples=counts,
    )


def _tfds_keys(info, name):
    """Finds the image and label feature names of a tfds data set."""
    import tensorflow_datasets as tfds

    features = info.features
    if info.supervised_keys and len(info.supervised_keys) == 2:
        image_key, label_key = info.supervised_keys
        if isinstance(image_key, str) and isinstance(label_key, str):
            if isinstance(features[label_key], tfds.features.ClassLabel):
                return image_key, label_key
    image_keys = [k for k, f in features.items() if isinstance(f, tfds.features.Image)]
    label_keys = [k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)]
    if not image_keys or not label_keys:
        raise ValueError(
            f"tfds data set {name!r} has no Image feature with a ClassLabel label; "
            f"features: {list(features.keys())}. Received: name={name!r}"
        )
    return image_keys[0], label_keys[0]
