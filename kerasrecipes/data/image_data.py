"""`ImageData`: what every data loader returns."""

import dataclasses


@dataclasses.dataclass(repr=False)
class ImageData:
    """Datasets of one image-classification problem, as every `kerasrecipes.data` loader returns.

    Args:
        train: `tf.data.Dataset` (or `keras.utils.PyDataset`) of `(uint8 [B, H, W, 3], int32 [B])`
            batches, shuffled each epoch.
        validation: same, not shuffled, or `None`.
        test: same, not shuffled, or `None`.
        class_names: list of str. Label `i` is `class_names[i]`.
        image_size: tuple `(height, width)` of every image.
        num_examples: dict. Split name (`"train"`, `"validation"`, `"test"`) → number of images,
            for the splits present.
        skipped: list of `(path, reason)` for image files left out because they could not be read.
        files: dict. Split name → list of `(path, label)` in dataset order (train: before
            shuffling). Empty for tfds and arrays.
        report: `kerasrecipes.data.scan.DataReport` of an image folder (images per class and
            split, duplicates and leakage, files left out, warnings), or `None`.

    Example:

    >>> import numpy as np
    >>> data = kr.array_datasets(np.zeros((8, 32, 32, 3), "uint8"), np.arange(8) % 2, batch_size=4)
    >>> data.num_classes, data.num_examples
    (2, {'train': 8})
    """

    train: object
    validation: object = None
    test: object = None
    class_names: list = dataclasses.field(default_factory=list)
    image_size: tuple = None
    num_examples: dict = dataclasses.field(default_factory=dict)
    skipped: list = dataclasses.field(default_factory=list)
    files: dict = dataclasses.field(default_factory=dict)
    report: object = None

    @property
    def num_classes(self):
        return len(self.class_names)

    def __repr__(self):
        return (
            f"ImageData(class_names={self.class_names!r}, image_size={self.image_size}, "
            f"num_examples={self.num_examples}, skipped={len(self.skipped)})"
        )
