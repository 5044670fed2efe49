"""Scale: distribution strategies and mixed precision (TensorFlow backend for strategies)."""

import contextlib

import keras

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
