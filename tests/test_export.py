import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import kerasrecipes as kr
from tiny_models import TINY

IMAGES = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3)).astype("uint8")


@pytest.fixture(scope="module")
def model():
    # Augmentation and (trainable) BatchNorm inside: the served graph must use neither.
    return kr.build_classifier(TINY, num_classes=3, weights=None, augment="standard")


def test_serves_in_inference_mode_and_matches_predict(model, tmp_path):
    import tensorflow as tf

    path = kr.export_saved_model(model, tmp_path / "export", class_names=["a", "b", "c"],
                                 metadata={"note": "test"})
    served = tf.saved_model.load(path)
    first = served.serve(IMAGES)
    second = served.serve(IMAGES)
    probs = first["probabilities"].numpy()
    np.testing.assert_array_equal(probs, second["probabilities"].numpy())
    np.testing.assert_allclose(probs, model.predict(IMAGES, verbose=0), atol=1e-5)
    assert first["class_index"].numpy().tolist() == probs.argmax(-1).tolist()
    assert [n.decode() for n in first["class_name"].numpy()] == [
        "abc"[i] for i in probs.argmax(-1)
    ]
    assert open(os.path.join(path, "labels.txt")).read().split() == ["a", "b", "c"]
    info = json.load(open(os.path.join(path, "kerasrecipes.json")))
    assert info["image_size"] == [16, 16] and info["metadata"] == {"note": "test"}


def test_loads_in_a_fresh_process_with_identical_outputs(model, tmp_path):
    path = kr.export_saved_model(model, tmp_path / "export", class_names=["a", "b", "c"])
    np.save(tmp_path / "x.npy", IMAGES)
    code = (
        "import sys, numpy as np, tensorflow as tf;"
        f"m = tf.saved_model.load({str(path)!r});"
        f"np.save({str(tmp_path / 'y.npy')!r}, m.serve(np.load({str(tmp_path / 'x.npy')!r}))"
        "['probabilities'].numpy())"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), model.predict(IMAGES, verbose=0),
                               atol=1e-5)


def test_a_failed_export_leaves_the_previous_one_intact(model, tmp_path):
    path = kr.export_saved_model(model, tmp_path / "export", class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="class_names has 2 names but the model has 3 classes"):
        kr.export_saved_model(model, path, class_names=["a", "b"])
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    # Re-exporting over an existing export replaces it and leaves no temporary directories.
    kr.export_saved_model(model, path, class_names=["x", "y", "z"])
    assert open(os.path.join(path, "labels.txt")).read().split() == ["x", "y", "z"]
    assert sorted(os.listdir(tmp_path)) == ["export"]


def test_binary_model_exports_a_class_index(tmp_path):
    binary = kr.build_classifier(TINY, num_classes=2, task="binary", weights=None)
    import tensorflow as tf

    path = kr.export_saved_model(binary, tmp_path / "bin", class_names=["no", "yes"])
    served = tf.saved_model.load(path)
    out = served.serve(IMAGES)
    expected = (binary.predict(IMAGES, verbose=0)[:, 0] > 0.5).astype(int)
    assert out["class_index"].numpy().tolist() == expected.tolist()
