"""Input pipelines: image folders, TensorFlow Datasets and arrays → batches of uint8 images.

Every entry point returns an `ImageData`: `train`, `validation` and `test` datasets yielding
`(images, labels)` batches where `images` is uint8 `[B, H, W, 3]` (RGB, resized to `image_size`) and
`labels` is int32 `[B]`, plus the class names and per-split counts. Pixels stay in 0–255: scaling is
the model's job (its `preprocess` sub-model), so the same data feeds any backbone.

One module per step, files → scan → `tf.data`:

- `decode`: how bytes become RGB uint8 (PIL and TensorFlow decoders, resizing; also what the
  exported `serve_bytes` signature runs).
- `scan`: finds the image files and decodes each one with PIL before training, so unreadable
  files are reported up front; it picks each file's decode path.
- `layout`: folder layouts (`root/<class>/*`, `root/train|validation|test/<class>/*`) and the
  stratified validation split.
- `pipeline`: the `tf.data` pipeline of scanned files (with the fused random-resized-crop).
- Sources: `folders` (`image_folder_datasets`, `load_image`), `tfds` (`tfds_datasets`),
  `arrays` (`array_datasets`).
- `arguments` and `image_data`: the shared argument checks and `ImageData`.

TensorFlow is imported inside the functions that need it: `import kerasrecipes.data` works without
it, and `array_datasets` falls back to a `keras.utils.PyDataset` when it is missing.
"""

from kerasrecipes.augment_albumentations import albumentations_map
from kerasrecipes.data.arrays import array_datasets
from kerasrecipes.data.decode import KINDS
from kerasrecipes.data.folders import image_folder_datasets, load_image
from kerasrecipes.data.graph_decode import decode_image_bytes
from kerasrecipes.data.image_data import ImageData
from kerasrecipes.data.layout import SPLIT_ALIASES
from kerasrecipes.data.scan import IMAGE_EXTENSIONS
from kerasrecipes.data.tfds import tfds_datasets

__all__ = [
    "IMAGE_EXTENSIONS",
    "KINDS",
    "SPLIT_ALIASES",
    "ImageData",
    "albumentations_map",
    "array_datasets",
    "decode_image_bytes",
    "image_folder_datasets",
    "load_image",
    "tfds_datasets",
]
