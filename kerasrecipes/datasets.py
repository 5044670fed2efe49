"""Ready-made data sets. `load_demo` needs no network: its images ship inside the package.

The demo set is the clothing-dataset-small by Alexey Grigorev (CC0 1.0,
https://github.com/alexeygrigorev/clothing-dataset-small): 3,409 real photos of 10 kinds of
clothing, split into `train` (3,068) and `validation` (341), downscaled so the shorter side is
128 pixels (`tools/make_demo_data.py` builds the zip). It is extracted once into the cache folder.
"""

import hashlib
import os
import shutil
import tempfile
import zipfile

from kerasrecipes import data
from kerasrecipes.utils import cache_dir

DEMO_ZIP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "clothing_demo.zip")
DEMO_CLASS_NAMES = (
    "dress", "hat", "longsleeve", "outwear", "pants",
    "shirt", "shoes", "shorts", "skirt", "t-shirt",
)


def _file_digest(path):
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _safe_members(archive, zip_path):
    """Returns the archive's member names, refusing absolute paths and `..` components."""
    names = archive.namelist()
    for name in names:
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
            raise ValueError(f"Unsafe path {name!r} in the zip archive {zip_path!r}.")
    return names


def demo_dir(cache=None):
    """Extracts the demo zip (once) and returns the folder holding `train/` and `validation/`.

    The folder name carries a hash of the zip, so a changed zip is extracted afresh. Extraction
    goes to a temporary folder that is renamed into place, so an interrupted or concurrent
    extraction never leaves a half-written data set behind.

    Args:
        cache: str or `None`. Cache folder. Defaults to `None` (`cache_dir()`).

    Returns:
        str. The extracted data set's root folder.

    Example:

    >>> sorted(os.listdir(demo_dir()))
    ['train', 'validation']
    """
    if not os.path.isfile(DEMO_ZIP):
        raise ValueError(
            f"The demo zip is missing from the installed package. Rebuild it with "
            f"`python tools/make_demo_data.py`. Expected: {DEMO_ZIP!r}"
        )
    cache = os.path.abspath(os.fspath(cache)) if cache is not None else cache_dir()
    target = os.path.join(cache, f"clothing_demo-{_file_digest(DEMO_ZIP)[:16]}")
    if os.path.isdir(target):
        return target
    os.makedirs(cache, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".clothing_demo-", dir=cache)
    try:
        with zipfile.ZipFile(DEMO_ZIP) as archive:
            archive.extractall(tmp, members=_safe_members(archive, DEMO_ZIP))
        try:
            os.rename(tmp, target)
        except OSError:
            if not os.path.isdir(target):  # Lost a race only if the winner finished.
                raise
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_demo(image_size=(128, 128), batch_size=32, **kwargs):
    """Loads the clothing demo set (10 classes, 3,068 train / 341 validation photos), offline.

    Args:
        image_size: int or `(height, width)`. Defaults to `(128, 128)` (the stored shorter side).
        batch_size: int. Defaults to `32`.
        **kwargs: other arguments of `kerasrecipes.image_folder_datasets` (`seed`, `cache`,
            `crop_to_aspect_ratio`, `verbose`, …).

    Returns:
        `kerasrecipes.ImageData` with `train` and `validation`.

    Example:

    >>> data = load_demo(image_size=64, batch_size=8, seed=0, verbose=False)
    >>> data.class_names[:3], data.num_examples
    (['dress', 'hat', 'longsleeve'], {'train': 3068, 'validation': 341})
    """
    return data.image_folder_datasets(
        demo_dir(), image_size=image_size, batch_size=batch_size, **kwargs
    )
