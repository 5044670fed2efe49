"""`.keras` files saved by earlier versions still load, predict the same and keep training.

The files in `tests/data/legacy/` were written by `tools/make_legacy_models.py` with the code of
the commit named in their `manifest.json` (before the issue #16 refactor moved the schedules,
optimizers' helpers and training code around). Never regenerate them to make this test pass.
"""

import json
import os

import keras
import numpy as np
import pytest

import kerasrecipes as kr  # noqa: F401  (registers the serializable classes)
from tiny_models import tiny_arrays

LEGACY = os.path.join(os.path.dirname(__file__), "data", "legacy")
with open(os.path.join(LEGACY, "manifest.json")) as _f:
    MANIFEST = json.load(_f)


def _expected(stem):
    with np.load(os.path.join(LEGACY, "expected.npz")) as f:
        inputs = f["inputs"]
        outputs = {k.split("/", 1)[1]: f[k] for k in f.files if k.startswith(stem + "/")}
        return inputs, (outputs or f[stem])


@pytest.mark.parametrize("name", sorted(MANIFEST["models"]))
def test_legacy_model_loads_predicts_the_recorded_outputs_and_trains_on(name):
    facts = MANIFEST["models"][name]
    model = keras.saving.load_model(os.path.join(LEGACY, name))
    inputs, expected = _expected(os.path.splitext(name)[0])
    outputs = model.predict(inputs, verbose=0)
    if isinstance(expected, dict):
        assert sorted(outputs) == sorted(expected)
        for task in expected:
            np.testing.assert_allclose(outputs[task], expected[task], rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-5)

    # The optimizer came back with its class, schedule and step count.
    optimizer = model.optimizer
    assert type(optimizer).__name__ == facts["optimizer"]
    assert type(optimizer._learning_rate).__name__ == facts["learning_rate"]
    assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == facts["iterations"]

    # And it trains on from there.
    images, labels = tiny_arrays(n=8)
    if isinstance(expected, dict):
        labels = {"label": labels, "flag": labels % 2, "score": labels.astype("float32") / 2}
    history = model.fit(images, labels, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == facts["iterations"] + 1
