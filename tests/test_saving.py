"""Tests for kerasrecipes.saving: atomic .keras saves, clear load errors, output folders."""

import errno
import json
import os
import zipfile

import keras
import numpy as np
import pytest

from kerasrecipes import saving
from kerasrecipes.layers import NormalizeImage


def _model():
    inputs = keras.Input((4, 4, 3))
    x = NormalizeImage(scale=1 / 255, mean=[0.5] * 3, std=[0.5] * 3)(inputs)
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(x))
    return keras.Model(inputs, outputs)


@pytest.fixture
def saved(tmp_path):
    model = _model()
    return model, saving.save_model(model, tmp_path / "model.keras")


def test_save_and_load_round_trip_with_custom_layers(saved):
    model, path = saved
    x = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3)).astype("float32")
    again = saving.load_model(path)
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6)
    assert os.listdir(os.path.dirname(path)) == ["model.keras"]  # No temporary file left.


def test_an_interrupted_save_never_replaces_a_good_file(saved, monkeypatch):
    model, path = saved
    good = open(path, "rb").read()

    def interrupted(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(good[: len(good) // 3])  # Half-way through the archive...
        raise KeyboardInterrupt  # ... Ctrl-C.

    monkeypatch.setattr(keras.Model, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        saving.save_model(model, path)
    assert open(path, "rb").read() == good
    assert os.listdir(os.path.dirname(path)) == ["model.keras"]

    def full_disk(self, filepath, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(keras.Model, "save", full_disk)
    with pytest.raises(OSError, match=r"Cannot write '.*model\.keras': no space left on the "
                                      r"device.*Any previous file there is intact") as info:
        saving.save_model(model, path)
    assert info.value.errno == errno.ENOSPC
    assert open(path, "rb").read() == good
    assert os.listdir(os.path.dirname(path)) == ["model.keras"]


def test_save_model_checks_the_path(tmp_path):
    with pytest.raises(ValueError, match=r"path must end in '\.keras'.*model\.h5"):
        saving.save_model(_model(), tmp_path / "model.h5")


def test_load_model_names_the_file_and_what_is_wrong(saved, tmp_path):
    _, path = saved
    good = open(path, "rb").read()

    def write(name, data):
        target = tmp_path / name
        target.write_bytes(data)
        return str(target)

    truncated = write("truncated.keras", good[: len(good) // 2])
    cases = {
        str(tmp_path / "missing.keras"): "no such file",
        str(tmp_path): "it is a folder, not a .keras file",
        write("empty.keras", b""): "it is empty (0 bytes)",
        write("notes.keras", b"just some text\n"): "it holds text, not a Keras model",
        truncated: "it is truncated or damaged",
        write("random.keras", bytes(range(256)) * 4): "not a Keras model file",
    }
    other_zip = str(tmp_path / "other.keras")
    with zipfile.ZipFile(other_zip, "w") as archive:
        archive.writestr("readme.txt", "a zip from another program")
    cases[other_zip] = "a zip archive but not a Keras model (no config.json inside)"
    for bad, message in cases.items():
        with pytest.raises(ValueError, match="Cannot load the model") as info:
            saving.load_model(bad)
        assert repr(bad) in str(info.value) and message in str(info.value), str(info.value)


def test_load_model_explains_a_saved_model_folder(tmp_path):
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "saved_model.pb").write_bytes(b"")
    with pytest.raises(ValueError, match="a SavedModel export .*load_exported"):
        saving.load_model(tmp_path / "export")


def test_load_model_explains_an_hdf5_file_that_is_not_a_model(tmp_path):
    weights = str(tmp_path / "model.weights.h5")
    _model().save_weights(weights)
    with pytest.raises(ValueError, match=r"Cannot load the model '.*model\.weights\.h5': an HDF5 "
                                         r"file that is not a whole Keras model \(weights only\? "
                                         r"then build the model and call model\.load_weights\)"):
        saving.load_model(weights)


def test_load_model_explains_a_newer_keras(saved, tmp_path):
    _, path = saved
    newer = str(tmp_path / "newer.keras")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(newer, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "metadata.json":
                meta = json.loads(data)
                meta["keras_version"] = "99.1.0"
                data = json.dumps(meta).encode()
            elif item.filename == "config.json":
                config = json.loads(data)
                config["config"]["layers"][-1]["class_name"] = "DenseFromTheFuture"
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    with pytest.raises(ValueError, match=rf"Cannot load the model '.*newer\.keras': it was saved "
                                         rf"by Keras 99\.1\.0, newer than the installed Keras "
                                         rf"{keras.__version__}\. Upgrade Keras"):
        saving.load_model(newer)


def test_check_output_dir(tmp_path):
    assert saving.check_output_dir(tmp_path / "new" / "deeper") == str(tmp_path / "new" /
                                                                        "deeper")
    (tmp_path / "empty").mkdir()
    saving.check_output_dir(tmp_path / "empty")
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / saving.MARKER_FILE).write_text("{}")
    (ours / "saved_model.pb").write_bytes(b"")
    saving.check_output_dir(ours)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    for name in "abcdefg":
        (theirs / f"{name}.txt").write_text(name)
    with pytest.raises(ValueError, match=r"--out '.*theirs' exists and was not written by "
                                         r"kerasrecipes \(no kerasrecipes\.json\); it holds 7 "
                                         r"entries \(a\.txt, b\.txt, c\.txt, d\.txt, e\.txt …\)"):
        saving.check_output_dir(theirs, "--out")
    saving.check_output_dir(theirs, replaced=False)  # Files are added, nothing is replaced.
    with pytest.raises(ValueError, match="out must be a folder, but .*a.txt' is a file"):
        saving.check_output_dir(theirs / "a.txt")


def test_marker_is_what_exports_write():
    from kerasrecipes.export import METADATA_FILE

    assert saving.MARKER_FILE == METADATA_FILE


def test_replace_dir_keeps_the_old_folder_until_the_new_one_is_in(tmp_path, monkeypatch):
    old, new = tmp_path / "out", tmp_path / "staging"
    old.mkdir()
    (old / "a").write_text("old")
    new.mkdir()
    (new / "a").write_text("new")
    real_rename = os.rename

    def failing_rename(src, dst):
        if os.fspath(src) == str(new):
            raise OSError(errno.EIO, "I/O error")
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(OSError, match="I/O error"):
        saving.replace_dir(str(new), str(old))
    assert (old / "a").read_text() == "old" and not (tmp_path / "out.old").exists()
    monkeypatch.setattr(os, "rename", real_rename)
    saving.replace_dir(str(new), str(old))
    assert (old / "a").read_text() == "new" and sorted(os.listdir(tmp_path)) == ["out"]
