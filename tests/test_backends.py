"""kerasrecipes without TensorFlow: `import kerasrecipes`, the array data path and training.

Runs in a fresh interpreter where `import tensorflow` fails, on the JAX backend (or torch; skipped
when neither is installed). CI runs it in a second environment with keras + jax and no TensorFlow.
"""

import importlib.util
import os
import subprocess
import sys

import pytest

CODE = """
import importlib.abc, importlib.machinery, sys

class Blocked(importlib.abc.Loader):
    def create_module(self, spec):
        raise ImportError("blocked " + spec.name)

    def exec_module(self, module):
        pass

class NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("tensorflow", "tensorflow_datasets"):
            return importlib.machinery.ModuleSpec(name, Blocked())

sys.meta_path.insert(0, NoTensorFlow())
import numpy as np
import kerasrecipes as kr

rng = np.random.default_rng(0)
x = rng.integers(0, 256, (12, 16, 16, 3)).astype("uint8")
data = kr.array_datasets(x, np.arange(12) % 2, validation_split=0.25, batch_size=4, seed=0)
model = kr.build_scratch_cnn(2, image_size=16, stages=2, filters=8, dense_units=())
history = kr.fit(model, data.train, data.validation, epochs=2, verbose=0)
print(type(data.train).__name__, history.epochs, sorted(history.history)[:2],
      "tensorflow" in sys.modules)
"""


def test_import_and_array_training_without_tensorflow():
    backend = next((b for b in ("jax", "torch") if importlib.util.find_spec(b)), None)
    if backend is None:
        pytest.skip("neither jax nor torch is installed")
    env = dict(os.environ, KERAS_BACKEND=backend)
    result = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "ArrayBatches 2 ['accuracy', 'learning_rate'] False"
