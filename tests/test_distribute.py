import os
import subprocess
import sys

import numpy as np
import pytest

import kerasrecipes as kr
from kerasrecipes.distribute import global_batch_size, precision_scope
from tiny_models import TINY, tiny_dataset

MIRRORED = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, {tests!r})
import numpy as np
import kerasrecipes as kr
from tiny_models import TINY, tiny_dataset

strategy = kr.get_strategy(devices=["/cpu:0", "/cpu:1"])
with strategy.scope():
    model = kr.build_classifier(TINY, num_classes=3, weights=None)
history = kr.fine_tune(model, tiny_dataset(), tiny_dataset(seed=1), head_epochs=1, epochs=1,
                       weight_decay=1e-2, verbose=0)
variable = model.get_layer("backbone").get_layer("stem_conv").kernel
replicas = [np.asarray(v) for v in variable.value.values]
print(strategy.num_replicas_in_sync, history.epochs, np.array_equal(replicas[0], replicas[1]))
"""


def test_fine_tune_under_a_mirrored_strategy_on_two_logical_cpus():
    code = MIRRORED.format(tests=os.path.dirname(__file__))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    # 2 replicas, both stages trained, replicas hold identical weights.
    assert result.stdout.strip().splitlines()[-1] == "2 2 True"


def test_get_strategy_without_gpus_is_the_default_strategy():
    import tensorflow as tf

    strategy = kr.get_strategy()
    assert strategy.num_replicas_in_sync == len(tf.config.list_logical_devices("GPU")) or 1
    assert global_batch_size(16, strategy) == 16 * strategy.num_replicas_in_sync
    with pytest.raises(ValueError, match="devices must be a non-empty list"):
        kr.get_strategy(devices=[])


def test_mixed_precision_trains_and_exports_float32_probabilities(tmp_path):
    import tensorflow as tf

    with precision_scope("mixed_bfloat16"):
        model = kr.build_classifier(TINY, num_classes=3, weights=None)
        assert model.get_layer("backbone").get_layer("stem_conv").compute_dtype == "bfloat16"
        history = kr.fine_tune(model, tiny_dataset(), head_epochs=1, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"]).all()
        path = kr.export_saved_model(model, tmp_path / "mixed", class_names=["a", "b", "c"])
    served = tf.saved_model.load(path)
    images = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3)).astype("uint8")
    probs = served.serve(images)["probabilities"]
    assert probs.dtype == tf.float32
    np.testing.assert_allclose(probs.numpy().sum(-1), 1.0, rtol=1e-3)


def test_bad_precision_is_a_clear_error():
    with pytest.raises(ValueError, match="precision must be one of"):
        kr.set_precision("float8")
