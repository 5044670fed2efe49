"""Multi-host training on JAX: `kr.initialize_multihost`, `kr.process_shard`, the local launcher.

The end-to-end check runs two processes on 127.0.0.1 (`python -m kerasrecipes.multihost`), each
training on its own shard, and compares them with one process training on the same global
batches. It needs jax (CI runs it in the second, TensorFlow-free environment).
"""

import importlib.util
import json
import os
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import kerasrecipes as kr
from kerasrecipes import distribute
from kerasrecipes.multihost import run_local

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Trains a tiny scratch CNN for 2 epochs with kr.fit. "multihost": this process' shard of 16 + 4
# images, 4 per batch (global batch 8). "reference": one process, batches made of process 0's
# batch then process 1's, i.e. the global batches of the multihost run.
WORKER = r'''
import faulthandler, json, os, sys
# The in-memory PyDataset path in both modes, even where TensorFlow is installed: two tf.data
# pipelines in one process shuffle differently from one pipeline in each of two processes.
sys.modules.update(tensorflow=None, tensorflow_datasets=None)
import keras
import numpy as np
import kerasrecipes as kr

out, mode = sys.argv[1], sys.argv[2]
faulthandler.dump_traceback_later(float(sys.argv[3]), exit=True)  # ends by itself, always
keras.utils.set_random_seed(0)  # same initial weights and batch order on every process
if mode == "multihost":
    kr.initialize_multihost()
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (40, 16, 16, 3)).astype("uint8")
y = np.arange(40) % 2
x[y == 1, :, :, 0] //= 2  # learnable: class 1 is less red
x_val, y_val, x, y = x[32:], y[32:], x[:32], y[:32]


class Concat(keras.utils.PyDataset):
    def __init__(self, parts):
        super().__init__()
        self.parts = parts

    def __len__(self):
        return len(self.parts[0])

    def __getitem__(self, i):
        return tuple(np.concatenate(b) for b in zip(*(part[i] for part in self.parts)))

    def on_epoch_end(self):
        for part in self.parts:
            part.on_epoch_end()


if mode == "multihost":
    data = kr.array_datasets(*kr.process_shard(x, y), *kr.process_shard(x_val, y_val),
                             batch_size=4, seed=0)
    train, validation = data.train, data.validation
else:
    shards = [kr.array_datasets(x[p::2], y[p::2], x_val[p::2], y_val[p::2], batch_size=4, seed=0)
              for p in (0, 1)]
    train = Concat([s.train for s in shards])
    validation = Concat([s.validation for s in shards])
model = kr.build_scratch_cnn(2, image_size=16, stages=2, filters=8, dense_units=(8,), dropout=0.2)
initial = model.get_weights()
history = kr.fit(model, train, validation, epochs=2, lr=3e-3, verbose=0)
result = {"processes": kr.process_count(), "steps": int(model.optimizer.iterations),
          "mean": model.get_layer("preprocess").get_layer("normalize").mean, **history.history}

if mode == "multihost":  # unequal shards (a short last batch) stop every process, clearly
    n = 16 - 2 * kr.process_index()
    bad = kr.array_datasets(x[:n], y[:n], batch_size=4, seed=0)
    try:
        kr.fit(kr.build_scratch_cnn(2, image_size=16, stages=1, filters=4, dense_units=()),
               bad.train, epochs=1, verbose=0)
    except ValueError as error:
        result["unequal_shards"] = str(error)

model = kr.finish_multihost(model)
name = f"{mode}_{kr.process_index()}"
np.savez(os.path.join(out, f"{name}_initial.npz"), *initial)
np.savez(os.path.join(out, f"{name}_final.npz"), *model.get_weights())
if kr.is_primary_process():
    model.save(os.path.join(out, f"{mode}.keras"))
    np.save(os.path.join(out, f"{mode}_predictions.npy"), model.predict(x_val, verbose=0))
with open(os.path.join(out, f"{name}.json"), "w") as f:
    json.dump(result, f)
'''


def _weights(path):
    with np.load(path) as f:
        return [f[f"arr_{i}"] for i in range(len(f.files))]


@pytest.mark.slow
def test_two_processes_train_like_one_process_on_the_global_batch(tmp_path):
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed: multi-host training runs on KERAS_BACKEND=jax "
                    "(CI runs this test in its JAX environment)")
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    env = dict(os.environ, KERAS_BACKEND="jax",
               PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    start = time.monotonic()
    reference = subprocess.Popen(  # meanwhile: the same global batches in one process
        [sys.executable, str(worker), str(tmp_path), "reference", "400"], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "kerasrecipes.multihost", "--processes", "2", "--timeout",
             "420", str(worker), str(tmp_path), "multihost", "400"],
            env=env, capture_output=True, text=True, timeout=480)
        left = max(10, 480 - (time.monotonic() - start))
        reference_output = reference.communicate(timeout=left)[0]
    finally:
        if reference.poll() is None:
            reference.kill()
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert reference.returncode == 0, reference_output[-4000:]

    logs = [json.loads((tmp_path / f"multihost_{i}.json").read_text()) for i in (0, 1)]
    single = json.loads((tmp_path / "reference_0.json").read_text())
    assert [log["processes"] for log in logs] == [2, 2] and single["processes"] == 1
    # 2 epochs x 4 global steps: each step took one batch from each process' shard.
    assert [log["steps"] for log in logs] == [8, 8] == [single["steps"]] * 2
    assert logs[0] == logs[1]  # same global loss, metrics, normalisation on both
    np.testing.assert_allclose(logs[0]["loss"], single["loss"], rtol=1e-5)
    np.testing.assert_allclose(logs[0]["val_loss"], single["val_loss"], rtol=1e-5)
    # Per-channel statistics of the shards merged = those of the global data.
    np.testing.assert_allclose(logs[0]["mean"], single["mean"], rtol=1e-6)
    assert "batches (first of 4, last of 2)" in logs[1]["unequal_shards"]
    assert logs[0]["unequal_shards"] == logs[1]["unequal_shards"]

    final = [_weights(tmp_path / f"multihost_{i}_final.npz") for i in (0, 1)]
    initial = _weights(tmp_path / "multihost_0_initial.npz")
    assert all(np.array_equal(a, b) for a, b in zip(*final))  # bit-identical replicas
    assert max(np.abs(a - b).max() for a, b in zip(final[0], initial)) > 1e-2  # it trained
    for a, b in zip(final[0], _weights(tmp_path / "reference_0_final.npz")):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # Only process 0 wrote the model; the local copy predicts like the reference model.
    assert (tmp_path / "multihost.keras").exists()
    assert sorted(p.name for p in tmp_path.glob("multihost*.keras")) == ["multihost.keras"]
    np.testing.assert_allclose(np.load(tmp_path / "multihost_predictions.npy"),
                               np.load(tmp_path / "reference_predictions.npy"), atol=1e-5)


@pytest.mark.skipif(keras.backend.backend() == "jax", reason="checks the non-JAX error")
def test_initialize_multihost_needs_the_jax_backend():
    with pytest.raises(RuntimeError, match="KERAS_BACKEND=jax") as error:
        kr.initialize_multihost("127.0.0.1:1234", num_processes=2, process_id=0)
    if keras.backend.backend() == "tensorflow":
        assert "keras-team/keras/issues/20585" in str(error.value)


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="argument checks run on JAX")
def test_initialize_multihost_checks_its_arguments():
    with pytest.raises(ValueError, match=r"process_id must be in \[0, num_processes=2\)"):
        kr.initialize_multihost("127.0.0.1:1234", num_processes=2, process_id=2)
    with pytest.raises(ValueError, match="num_processes must be an int >= 1"):
        kr.initialize_multihost("127.0.0.1:1234", num_processes="two", process_id=0)


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="argument checks run on JAX")
def test_initialize_multihost_reads_keras_variables_and_must_come_first(monkeypatch):
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "2")
    monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "-1")
    with pytest.raises(ValueError, match="process_id must be an int >= 0. Received: .*'-1'"):
        kr.initialize_multihost("127.0.0.1:1234")
    keras.ops.convert_to_numpy(keras.ops.ones(1))  # JAX has computed: too late to join a job
    with pytest.raises(RuntimeError, match="must run before anything computes with JAX"):
        kr.initialize_multihost("127.0.0.1:1234", num_processes=2, process_id=1)


def test_process_shard_gives_equal_disjoint_interleaved_shards(monkeypatch):
    x = np.arange(11)
    y = np.arange(11) * 10
    assert np.array_equal(kr.process_shard(x), x)  # one process: everything
    monkeypatch.setattr(distribute, "process_count", lambda: 3)
    shards = []
    for index in range(3):
        monkeypatch.setattr(distribute, "process_index", lambda index=index: index)
        xs, ys = kr.process_shard(x, y)
        assert np.array_equal(ys, xs * 10)  # rows stay paired
        shards.append(xs)
    assert [s.tolist() for s in shards] == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    with pytest.raises(ValueError, match="same length"):
        kr.process_shard(x, y[:5])
    with pytest.raises(ValueError, match="fewer rows"):
        kr.process_shard(x[:2])


def _python(code):
    return [sys.executable, "-c", code]


def test_launcher_sets_the_job_variables(tmp_path):
    code = ("import json, os, sys; json.dump({k: os.environ[k] for k in os.environ "
            "if k.startswith('KERAS_')}, open(sys.argv[1] + os.environ["
            "'KERAS_DISTRIBUTION_PROCESS_ID'], 'w'))")
    assert run_local(_python(code) + [str(tmp_path / "env")], processes=2, timeout=60) == 0
    envs = [json.loads((tmp_path / f"env{i}").read_text()) for i in (0, 1)]
    assert [e["KERAS_DISTRIBUTION_PROCESS_ID"] for e in envs] == ["0", "1"]
    assert {e["KERAS_DISTRIBUTION_NUM_PROCESSES"] for e in envs} == {"2"}
    assert {e["KERAS_BACKEND"] for e in envs} == {"jax"}
    address = envs[0]["KERAS_DISTRIBUTION_JOB_ADDRESSES"]
    assert address == envs[1]["KERAS_DISTRIBUTION_JOB_ADDRESSES"]
    assert address.startswith("127.0.0.1:") and int(address.split(":")[1]) > 0


def test_launcher_stops_every_process_on_failure_and_on_timeout():
    # Process 1 fails at once: process 0 (sleeping) is killed and its status is reported.
    code = ("import os, sys, time; sys.exit(3) if os.environ['KERAS_DISTRIBUTION_PROCESS_ID'] "
            "== '1' else time.sleep(60)")
    start = time.monotonic()
    assert run_local(_python(code), processes=2, timeout=60) == 3
    assert run_local(_python("import time; time.sleep(60)"), processes=2, timeout=1) == 124
    assert time.monotonic() - start < 30
    with pytest.raises(ValueError, match="processes must be an int >= 1"):
        run_local(_python("pass"), processes=0)
