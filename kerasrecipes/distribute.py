"""Scale: distribution strategies (TensorFlow), multi-host training (JAX), mixed precision."""

import contextlib
import os

import keras
import numpy as np

from kerasrecipes.batches import first_batch, num_batches

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def get_strategy(devices=None):
    """Chooses the `tf.distribute` strategy for this machine.

    Several GPUs → `MirroredStrategy` over all of them; one GPU → `OneDeviceStrategy`; none → the
    default strategy. Build the model under `strategy.scope()`; `fine_tune`/`fit` then compile and
    train under it too. Batch sizes in kerasrecipes datasets are **global**: each of the
    `strategy.num_replicas_in_sync` replicas sees `batch_size / replicas` images per step (see
    `global_batch_size`).

    Args:
        devices: optional list of device names (e.g. `["/gpu:0", "/gpu:1"]`, or logical CPUs in
            tests) for a `MirroredStrategy`. Defaults to `None` (automatic).

    Example:
    >>> strategy = kr.get_strategy()
    >>> with strategy.scope():
    ...     model = kr.build_classifier("efficientnet_lite0", num_classes=10)
    >>> kr.fine_tune(model, data.train, data.validation)
    """
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "get_strategy() returns a tf.distribute strategy and needs KERAS_BACKEND=tensorflow; "
            "on JAX use keras.distribution.DataParallel. "
            f"Current backend: {keras.backend.backend()!r}."
        )
    import tensorflow as tf

    if devices is not None:
        if not devices or not all(isinstance(d, str) for d in devices):
            raise ValueError(f"devices must be a non-empty list of device names. "
                             f"Received: devices={devices!r}")
        return tf.distribute.MirroredStrategy(list(devices))
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    if len(gpus) == 1:
        return tf.distribute.OneDeviceStrategy(gpus[0].name)
    return tf.distribute.get_strategy()


def global_batch_size(per_replica_batch_size, strategy=None):
    """The batch size to load data with so each replica gets `per_replica_batch_size` images."""
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    return per_replica_batch_size * replicas


def set_precision(precision):
    """Sets Keras' global dtype policy; call it before building the model.

    `"mixed_bfloat16"` (TPUs, recent GPUs and CPUs), `"mixed_float16"` (GPUs; Keras adds dynamic
    loss scaling in `compile`) or `"float32"`. Model outputs stay float32 (the `predictions`
    layer), so losses and exported probabilities are float32 either way.

    Args:
        precision: str. One of `PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}. Received: precision={precision!r}")
    keras.mixed_precision.set_global_policy(precision)


@contextlib.contextmanager
def precision_scope(precision):
    """Temporarily sets the global dtype policy (restores the previous one on exit)."""
    previous = keras.mixed_precision.global_policy().name
    set_precision(precision)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


# Multi-host training: JAX multi-process + keras.distribution.DataParallel.
#
# Keras 3 `model.fit` does not run under tf.distribute.MultiWorkerMirroredStrategy
# (keras-team/keras#20585), so several hosts train on the JAX backend: every process runs the same
# script on its own shard of the data, JAX assembles the global batch from the per-process
# batches and keeps the (replicated) weights identical with cross-process all-reduces.

MULTIHOST_ISSUE = "https://github.com/keras-team/keras/issues/20585"
_ENV = {
    "coordinator_address": "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "num_processes": "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "process_id": "KERAS_DISTRIBUTION_PROCESS_ID",
}


def initialize_multihost(coordinator_address=None, num_processes=None, process_id=None):
    """Joins this process to a multi-host JAX training job and turns on data parallelism.

    Call it at the top of the training script, before building a model, with the same script
    running once per host (process). It calls `keras.distribution.initialize` (which calls
    `jax.distributed.initialize`; on CPU the processes talk over Gloo) and sets
    `keras.distribution.DataParallel` over every device of every process. `kr.fit`,
    `kr.fine_tune` and `kr.fit_one_cycle` then train as usual, and:

    - every process passes **its own shard** of the data (e.g. `kr.array_datasets(
      *kr.process_shard(x, y), batch_size=32)`): `batch_size` is per process and the global batch
      is `batch_size * num_processes`. The shards must give the same number of batches of the same
      sizes (`kr.process_shard` makes equal shards; training stops with an error otherwise);
    - the weights stay identical on all processes (BatchNorm statistics are those of the global
      batch); the logs (loss, metrics) are global;
    - after training, `model = kr.finish_multihost(model)` on every process gives a local copy
      to predict, save and export; write files from one process only
      (`if kr.is_primary_process(): ...`). Saving *during* training (`ModelCheckpoint`,
      `backup_dir`) is not supported: Keras' savers hang unless every process saves at once.

    Needs `KERAS_BACKEND=jax`. The three arguments default to Keras' environment variables
    `KERAS_DISTRIBUTION_JOB_ADDRESSES`, `KERAS_DISTRIBUTION_NUM_PROCESSES` and
    `KERAS_DISTRIBUTION_PROCESS_ID`; when none is set, JAX detects Slurm, Open MPI and Cloud TPU
    clusters itself. With one process this only sets `DataParallel` over the local devices.

    Args:
        coordinator_address: optional str. `host:port` of process 0, reachable from every process
            (comma-separated job addresses are accepted too; the first one is the coordinator).
            Defaults to `None` (the environment).
        num_processes: optional int. Number of processes in the job. Defaults to `None`.
        process_id: optional int. This process' index in `[0, num_processes)`; process 0 runs the
            coordinator. Defaults to `None`.

    Returns:
        The `keras.distribution.DataParallel` distribution now in effect.

    Example:
    >>> # On host 0 (10.0.0.1) and host 1, with process_id=1 there:
    >>> kr.initialize_multihost("10.0.0.1:12345", num_processes=2, process_id=0)
    >>> x, y = kr.process_shard(x_train, y_train)
    >>> data = kr.array_datasets(x, y, batch_size=32, seed=0)
    >>> kr.fit(kr.build_scratch_cnn(10, image_size=32), data.train, epochs=5)
    """
    backend = keras.backend.backend()
    if backend != "jax":
        reason = ""
        if backend == "tensorflow":
            reason = (" Keras 3 model.fit does not run under TensorFlow's "
                      f"MultiWorkerMirroredStrategy ({MULTIHOST_ISSUE}); for several GPUs on one "
                      "host use kr.get_strategy().")
        raise RuntimeError(
            "Multi-host training needs KERAS_BACKEND=jax (pip install 'jax[cpu]' or "
            f"'jax[cuda12]', then export KERAS_BACKEND=jax before starting Python).{reason} "
            f"Current backend: {backend!r}."
        )
    values = {"coordinator_address": coordinator_address, "num_processes": num_processes,
              "process_id": process_id}
    for name, variable in _ENV.items():
        if values[name] is None and os.environ.get(variable):
            values[name] = os.environ[variable]
    coordinator_address = values["coordinator_address"]
    num_processes = _as_int("num_processes", values["num_processes"], low=1)
    process_id = _as_int("process_id", values["process_id"], low=0)
    if num_processes is not None and process_id is not None and process_id >= num_processes:
        raise ValueError(f"process_id must be in [0, num_processes={num_processes}). "
                         f"Received: process_id={process_id}")
    if num_processes != 1:
        import jax

        # CPU processes need Gloo to all-reduce; older JAX versions did not default to it.
        if getattr(jax.config, "jax_cpu_collectives_implementation", "gloo") is None:
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        try:
            keras.distribution.initialize(coordinator_address, num_processes, process_id)
        except RuntimeError as error:
            if "before" in str(error):  # JAX computed something already
                raise RuntimeError(
                    "kr.initialize_multihost() must run before anything computes with JAX: call "
                    "it at the top of the script, before building or loading a model."
                ) from error
            raise
        except ValueError as error:
            if coordinator_address is None:
                raise ValueError(
                    "No multi-host job found: pass coordinator_address, num_processes and "
                    "process_id, or set " + ", ".join(_ENV.values()) + f". ({error})"
                ) from error
            raise
    # Each process feeds its own shard: never let Keras re-shard a tf.data dataset.
    distribution = keras.distribution.DataParallel(auto_shard_dataset=False)
    keras.distribution.set_distribution(distribution)
    return distribution


def finish_multihost(model):
    """Ends data parallelism in this process and returns a local copy of the trained model.

    After multi-host training the weights are arrays spread over every process: `predict` cannot
    gather its outputs and `save`/`export` hang waiting for the other processes. Call this on
    every process once training is over; the copy (same architecture, same weights, no
    optimizer) predicts, saves and exports like any model. Write files from one process only
    (`kr.is_primary_process()`). Training after this call is no longer distributed. On a
    single process without a distribution it returns `model`.

    Args:
        model: keras.Model trained under `kr.initialize_multihost`.

    Returns:
        keras.Model whose weights live on this process only.

    Example:
    >>> model = kr.finish_multihost(model)
    >>> if kr.is_primary_process():
    ...     model.save("model.keras")
    """
    if keras.distribution.distribution() is None:
        return model
    weights = model.get_weights()  # replicated on every process: read locally, no collective
    keras.distribution.set_distribution(None)
    local = keras.models.clone_model(model)
    local.set_weights(weights)
    return local


def _as_int(name, value, low):
    if value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or number != float(value) or number < low or isinstance(value, bool):
        raise ValueError(f"{name} must be an int >= {low}. Received: {name}={value!r}")
    return number


def process_index():
    """This process' index in a multi-host job (`0` on a single host or another backend)."""
    if keras.backend.backend() != "jax":
        return 0
    import jax

    return jax.process_index()


def process_count():
    """Number of processes in a multi-host job (`1` on a single host or another backend)."""
    if keras.backend.backend() != "jax":
        return 1
    import jax

    return jax.process_count()


def is_primary_process():
    """True on process 0: the one that writes checkpoints, exports and reports."""
    return process_index() == 0


def process_shard(*arrays):
    """This process' equal share of in-memory arrays, for multi-host training.

    Takes every `process_count()`-th row starting at `process_index()`, trimmed so that every
    process gets `len // process_count()` rows (a few rows at the end are dropped when the length
    does not divide): equal shards give every process the same batches. Interleaving keeps the
    class mix of sorted arrays. Returns the arrays unchanged on a single process.

    Args:
        *arrays: arrays with the same first dimension (e.g. images and labels).

    Returns:
        The shard of each array: a tuple, or the array itself when one was given.

    Example:
    >>> x_shard, y_shard = kr.process_shard(x_train, y_train)
    >>> data = kr.array_datasets(x_shard, y_shard, batch_size=32, seed=0)
    """
    if not arrays:
        raise ValueError("process_shard needs at least one array.")
    lengths = {len(a) for a in arrays}
    if len(lengths) != 1:
        raise ValueError(f"The arrays must have the same length. Received lengths: "
                         f"{[len(a) for a in arrays]}")
    count, index = process_count(), process_index()
    per_process = lengths.pop() // count
    if per_process == 0:
        raise ValueError(f"The arrays have fewer rows ({len(arrays[0])}) than there are "
                         f"processes ({count}).")
    shards = tuple(a[index::count][:per_process] for a in arrays)
    return shards if len(shards) > 1 else shards[0]


def prepare_processes(model, train, validation, steps, backup_dir):
    """Before multi-process training: checks the shards agree and syncs input normalisation.

    Every step of SPMD training assembles one global batch from one batch per process, so the
    processes must have as many batches, of the same sizes; a mismatch would hang, fail deep in
    JAX or silently run different programs on different processes. `NormalizeImage` statistics
    adapted on each process' shard are merged into those of the global data (the shards hold
    equally many images), so every process runs the same model.
    """
    if process_count() == 1:
        return
    from jax.experimental import multihost_utils

    if backup_dir is not None:
        raise ValueError(
            "backup_dir is not supported in multi-host training yet: the processes would write "
            f"the same checkpoint files. Received: backup_dir={backup_dir!r}"
        )
    mine = _batch_sizes(train, steps) + _batch_sizes(validation)
    every = np.asarray(multihost_utils.process_allgather(np.asarray(mine, np.int32))).tolist()
    if any(sizes != every[0] for sizes in every):
        described = "; ".join(
            f"process {i}: {_describe(sizes[:3])} for training, {_describe(sizes[3:])} for "
            "validation" for i, sizes in enumerate(every)
        )
        raise ValueError(
            "Multi-host training needs the same number of batches of the same sizes on every "
            f"process, but the data shards differ: {described}. Give every process an equal "
            "shard (kr.process_shard) and the same batch_size."
        )
    from kerasrecipes.layers import NormalizeImage

    try:
        layers = model.get_layer("preprocess").layers
    except ValueError:
        return
    for layer in layers:
        if isinstance(layer, NormalizeImage) and layer.adapted:
            stats = np.stack([np.broadcast_to(layer.mean, 3), np.broadcast_to(layer.std, 3)])
            every = np.asarray(multihost_utils.process_allgather(stats.astype(np.float32)))
            if (every == every[0]).all():
                continue
            mean = every[:, 0].mean(axis=0)
            variance = (every[:, 1] ** 2 + every[:, 0] ** 2).mean(axis=0) - mean**2
            layer.mean = mean.tolist()
            layer.std = np.maximum(np.sqrt(np.maximum(variance, 0.0)),
                                   1e-3 * layer.scale * 255).tolist()


def _batch_sizes(dataset, steps=None):
    """`[batches, first batch size, last batch size]`; `-1` where unknown, zeros for `None`."""
    if dataset is None:
        return [0, 0, 0]
    length = num_batches(dataset)
    known = length is not None and length > 0
    last = -1
    if known and hasattr(dataset, "__getitem__"):  # a PyDataset: cheap (tf.data would decode)
        last = len(dataset[length - 1][0])
    return [steps or (length if known else -1), len(first_batch(dataset)[0]), last]


def _describe(sizes):
    batches, first, last = (str(n) if n >= 0 else "?" for n in sizes)
    return "no data" if batches == "0" else f"{batches} batches (first of {first}, last of {last})"
