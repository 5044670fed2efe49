"""Saving and loading files safely: atomic `.keras` saves, clear load errors, output folders.

- `save_model` writes a `.keras` file to a temporary file in the same folder, flushes it to disk
  (`fsync`) and renames it over the target (`os.replace`, atomic on POSIX and Windows): a save
  interrupted half-way (a crash, Ctrl-C, a full disk) never replaces a good file. `save_weights`
  (`.weights.h5`), `save_arrays` (`.npz`) and `save_json` do the same through `write_atomically`.
- `load_model` loads a `.keras` file (or a legacy Keras `.h5`) with kerasrecipes' custom objects
  registered, and turns what goes wrong — a truncated file, a file from another program, a model
  saved by a newer Keras — into one `ValueError` naming the file and saying what to do.
- `check_output_dir` tells before any work starts whether a folder can be written as a whole
  (it must be missing, empty, or one kerasrecipes wrote), and `replace_dir` swaps a finished
  staging folder into place, keeping the old one until the swap succeeded.
"""

import errno
import json
import os
import shutil
import tempfile
import zipfile

# Written into every kerasrecipes export folder: how `check_output_dir` recognises its own.
MARKER_FILE = "kerasrecipes.json"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _fsync_dir(folder):
    """Flushes a folder's entries (the rename) to disk where the OS allows it (not Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _explain_write_error(error, path):
    """An `OSError` like `error` whose message names `path` and says what to do."""
    if error.errno == errno.ENOSPC:
        hint = "no space left on the device: free some space, or write elsewhere"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "the folder is not writable: fix its permissions, or write elsewhere"
    else:
        return error
    return OSError(error.errno, f"Cannot write {path!r}: {hint} ({error.strerror or error}). "
                                "Any previous file there is intact.")


def write_atomically(path, write, suffix=""):
    """Writes `path` through `write(tmp)`, atomically: a failed write leaves the old file intact.

    `write` gets a temporary path in the same folder (ending in `suffix`, for writers that check
    the extension); once it returns, the file is flushed to disk (`fsync`) and renamed over
    `path` (`os.replace`, atomic on POSIX and Windows). On any error (a full disk, Ctrl-C) the
    temporary file is removed and `path` is as it was.

    Args:
        path: str or path-like. The file to write. Its folder is created if needed.
        write: callable `tmp_path -> None` that writes the whole file.
        suffix: str. How the temporary file's name ends. Defaults to `""`.

    Returns:
        The absolute path written, as str.
    """
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=f".tmp{suffix}",
                                   dir=folder)
        os.close(fd)
    except OSError as error:
        raise _explain_write_error(error, path) from error
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        _remove_quietly(tmp)
        raise _explain_write_error(error, path) from error
    except BaseException:
        _remove_quietly(tmp)
        raise
    _fsync_dir(folder)
    return path


def save_model(model, path):
    """Saves `model` as a `.keras` file atomically: a failed save leaves the old file intact.

    Args:
        model: keras.Model.
        path: str or path-like ending in `.keras`. Its folder is created if needed.

    Returns:
        The path written, as str.

    Example:

    >>> import os, tempfile, keras
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    >>> path = save_model(model, os.path.join(tempfile.mkdtemp(), "model.keras"))
    >>> load_model(path).output_shape
    (None, 2)
    """
    path = os.path.abspath(os.fspath(path))
    if not path.endswith(".keras"):
        raise ValueError(
            f"path must end in '.keras' (the Keras v3 format). Received: path={path!r}")
    return write_atomically(path, model.save, suffix=".keras")


def save_weights(model, path):
    """Saves `model`'s weights as a `.weights.h5` file atomically (see `write_atomically`).

    Args:
        model: keras.Model.
        path: str or path-like ending in `.weights.h5`.

    Returns:
        The path written, as str.
    """
    path = os.fspath(path)
    if not path.endswith(".weights.h5"):
        raise ValueError(f"path must end in '.weights.h5' (Keras' weights format). "
                         f"Received: path={path!r}")
    return write_atomically(path, model.save_weights, suffix=".weights.h5")


def save_arrays(path, arrays):
    """Saves a list of numpy arrays as an `.npz` file (`arr_0`, `arr_1`, …) atomically.

    Args:
        path: str or path-like ending in `.npz`.
        arrays: list of arrays, e.g. `model.get_weights()`.

    Returns:
        The path written, as str.
    """
    import numpy as np

    return write_atomically(path, lambda tmp: np.savez(tmp, *arrays), suffix=".npz")


def save_json(path, obj):
    """Writes `obj` as a JSON file atomically. Returns the path written, as str."""

    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1)

    return write_atomically(path, write, suffix=".json")


def _remove_quietly(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _newer_keras(saved_version):
    """True when `saved_version` (e.g. '3.16.0') is newer than the installed Keras."""
    import keras

    def parts(version):
        out = []
        for piece in str(version).split(".")[:3]:
            digits = "".join(c for c in piece if c.isdigit())
            out.append(int(digits) if digits else 0)
        return tuple(out)

    return parts(saved_version) > parts(keras.__version__)


def _describe_non_zip(path, head):
    if head.startswith(b"PK\x03\x04"):
        return ("it is truncated or damaged (a zip archive without its directory: an interrupted "
                "save or copy?). Save or copy the model again")
    if not head:
        return "it is empty (0 bytes). Save the model again"
    printable = all(32 <= b < 127 or b in (9, 10, 13) for b in head[:256])
    if printable:
        return "it holds text, not a Keras model. Pass the .keras file a Keras model.save wrote"
    return ("it is not a Keras model file (neither a .keras zip archive nor a Keras HDF5 file). "
            "Pass the .keras file a Keras model.save wrote")


def load_model(path, compile=True):
    """Loads a `.keras` model (or a legacy Keras `.h5`) with clear errors naming the file.

    kerasrecipes' layers, optimizers and schedules are registered first. Errors are `ValueError`s
    that name the file and say what to do: missing file, a SavedModel folder (use
    `kerasrecipes.export.load_exported`), an empty, truncated or text file, a zip or HDF5 file
    from another program (e.g. weights only), or a model saved by a newer Keras than installed.

    Args:
        path: str or path-like. The model file.
        compile: bool. Restore the optimizer, loss and metrics too. Defaults to `True`.

    Returns:
        keras.Model.

    Example:

    >>> import os, tempfile, keras
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    >>> path = save_model(model, os.path.join(tempfile.mkdtemp(), "model.keras"))
    >>> load_model(path).count_params()
    8
    """
    import keras

    import kerasrecipes  # noqa: F401  (registers the custom layers, optimizers and schedules)

    path = os.fspath(path)
    if os.path.isdir(path):
        what = ("a SavedModel export (load it with kerasrecipes.export.load_exported or "
                "tf.saved_model.load)" if os.path.isfile(os.path.join(path, "saved_model.pb"))
                else "a folder")
        raise ValueError(f"Cannot load the model {path!r}: it is {what}, not a .keras file.")
    if not os.path.isfile(path):
        raise ValueError(f"Cannot load the model {path!r}: no such file.")
    with open(path, "rb") as f:
        head = f.read(512)
    saved_version = None
    if head.startswith(_HDF5_MAGIC):
        kind = "hdf5"
    elif zipfile.is_zipfile(path):
        kind = "keras"
        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
                if "config.json" not in names:
                    raise ValueError(
                        f"Cannot load the model {path!r}: it is a zip archive but not a Keras "
                        "model (no config.json inside). Pass the .keras file a Keras model.save "
                        "wrote."
                    )
                if "metadata.json" in names:
                    saved_version = json.loads(archive.read("metadata.json")).get("keras_version")
        except (zipfile.BadZipFile, json.JSONDecodeError, OSError) as error:
            raise ValueError(f"Cannot load the model {path!r}: the archive is damaged "
                             f"({error}). Save or copy the model again.") from error
    else:
        raise ValueError(f"Cannot load the model {path!r}: {_describe_non_zip(path, head)}.")
    try:
        return keras.saving.load_model(path, compile=compile)
    except Exception as error:
        if saved_version and _newer_keras(saved_version):
            raise ValueError(
                f"Cannot load the model {path!r}: it was saved by Keras {saved_version}, newer "
                f"than the installed Keras {keras.__version__}. Upgrade Keras (pip install -U "
                f"keras). Error: {type(error).__name__}: {error}"
            ) from error
        if kind == "hdf5":
            raise ValueError(
                f"Cannot load the model {path!r}: an HDF5 file that is not a whole Keras model "
                "(weights only? then build the model and call model.load_weights). "
                f"Error: {type(error).__name__}: {error}"
            ) from error
        raise ValueError(f"Cannot load the model {path!r}: {type(error).__name__}: {error}. Is "
                         "it damaged, or does it need custom objects that are not "
                         "registered?") from error


def _nearest_existing(path):
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check_output_dir(path, argument="out", replaced=True):
    """Checks before any work that the folder `path` can be written.

    With `replaced=True` (a folder written as a whole, like an export) it must be missing,
    empty, or a folder kerasrecipes wrote (it holds `kerasrecipes.json`), so a folder of other
    files is refused rather than lost. The folder (or the nearest existing one above it) must be
    writable: a file is created and removed there to know for sure (permission bits do not tell
    for root, read-only mounts or network disks).

    Args:
        path: str or path-like. The output folder.
        argument: str. How the folder is named in messages (e.g. `"--out"`). Defaults to `"out"`.
        replaced: bool. Whether writing replaces the whole folder. Defaults to `True`.

    Returns:
        The absolute path, as str.
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{argument} must be a folder, but {path!r} is a file. Choose another "
                         "path.")
    if replaced and os.path.isdir(path):
        entries = sorted(os.listdir(path))
        if entries and MARKER_FILE not in entries:
            shown = ", ".join(entries[:5]) + (" …" if len(entries) > 5 else "")
            raise ValueError(
                f"{argument} {path!r} exists and was not written by kerasrecipes (no "
                f"{MARKER_FILE}); it holds {len(entries)} entries ({shown}). Its content would be "
                f"replaced: choose another folder, or empty it first."
            )
    folder = _nearest_existing(os.path.dirname(path) if replaced else path)
    try:
        fd, probe = tempfile.mkstemp(prefix=".kerasrecipes-write-test-", dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as error:
        raise ValueError(f"{argument} {path!r} cannot be written: the folder {folder!r} is not "
                         f"writable ({error.strerror or error}). Choose another folder or fix "
                         "its permissions.") from error
    return path


def replace_dir(new, path):
    """Moves the finished folder `new` to `path`, keeping the old `path` until the move succeeded.

    Both must be on the same file system (make `new` next to `path`).
    """
    old = None
    if os.path.exists(path):
        old = f"{path}.old"
        shutil.rmtree(old, ignore_errors=True)
        os.rename(path, old)
    try:
        os.rename(new, path)
    except BaseException:
        if old:
            os.rename(old, path)
        raise
    if old:
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(os.path.dirname(os.path.abspath(path)))
