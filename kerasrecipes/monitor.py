"""Watching training: per-layer activation and gradient statistics, and named curve patterns.

- `TrainingMonitor`: a Keras callback that, every `every` steps, runs one fixed probe batch
  through the model and records per layer: activation mean/std, fraction of zeros, dead units
  (ReLU channels that are zero for every probe image), saturated fraction (tanh/sigmoid), and the
  gradient norm, its ratio to the weight norm, and the update ratio ‖Δw‖/‖w‖ per step. It warns
  about vanishing/exploding gradients, dead and saturated units, writes histograms to TensorBoard
  and PNG figures.
- `diagnose_history` (from `kerasrecipes.curves`, re-exported here): names the patterns of
  loss/accuracy curves (overfitting gap, loss going up or plateauing → learning rate, noisy
  validation → larger batch); `history_report` (`kerasrecipes.history`) writes them as a report.

Reference: CS231n, "Neural Networks Part 3: Learning and Evaluation" (babysitting the learning
process); Glorot & Bengio, "Understanding the difficulty of training deep feedforward neural
networks" (2010).
"""

import math
import warnings

import keras
import numpy as np

from kerasrecipes.batches import take_batches
from kerasrecipes.curves import CURVE_PATTERNS, diagnose_history  # noqa: F401  (re-exported)
from kerasrecipes.gradients import value_and_gradients
from kerasrecipes.history import history_report  # noqa: F401  (re-exported: kr.monitor.X)
from kerasrecipes.plotting import pyplot
from kerasrecipes.tasks import is_multitask, loss_fn, model_loss, task_loss_weights

_RELU_LIKE = ("relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "swish", "silu",
              "hard_swish", "hard_silu")
_SATURATING = ("tanh", "sigmoid", "hard_sigmoid")


# ---------------------------------------------------------------------------------------------
# Pure functions.


def activation_stats(values, kind="relu", saturation=0.97):
    """Statistics of one layer's activations `[batch, ..., units]`.

    Args:
        values: array of activations; the last axis is the unit (channel) axis.
        kind: str. The activation's name; decides what "dead" and "saturated" mean.
        saturation: float. |tanh| above it, or sigmoid outside [1 - s, s], counts as saturated.
            Defaults to `0.97`.

    Returns:
        dict with `mean`, `std`, `zero_fraction` (values exactly 0, or ≤ 0 after ReLU), `dead_units`
        (fraction of units never positive on the batch, ReLU-like only, else 0) and
        `saturated_fraction` (tanh/sigmoid only, else 0).

    Example:
    >>> activation_stats(np.maximum(np.random.randn(8, 4, 4, 16), 0))["zero_fraction"]  # ~0.5
    """
    values = np.asarray(values, dtype="float64")
    units = values.reshape(-1, values.shape[-1]) if values.ndim > 1 else values.reshape(-1, 1)
    stats = {"mean": float(values.mean()), "std": float(values.std()),
             "zero_fraction": float(np.mean(values == 0.0)), "dead_units": 0.0,
             "saturated_fraction": 0.0}
    if kind in _RELU_LIKE:
        stats["zero_fraction"] = float(np.mean(values <= 0.0))
        stats["dead_units"] = float(np.mean(units.max(axis=0) <= 0.0))
    if kind == "tanh":
        stats["saturated_fraction"] = float(np.mean(np.abs(values) > saturation))
    elif kind in ("sigmoid", "hard_sigmoid"):
        stats["saturated_fraction"] = float(np.mean((values > saturation)
                                                    | (values < 1 - saturation)))
    return stats


def gradient_alerts(names, grad_norms, weight_norms, first_norm=None, vanishing=1e-4,
                    exploding=100.0):
    """Flags vanishing or exploding gradients from per-layer norms (first layer first).

    Args:
        names: list of layer names, input to output.
        grad_norms: list of gradient norms per layer.
        weight_norms: list of weight norms per layer.
        first_norm: optional float. The global gradient norm at the first log.
        vanishing: float. Flag a layer whose relative gradient ‖g‖/‖w‖ is below `vanishing`
            times the largest one. Defaults to `1e-4`.
        exploding: float. Flag a global norm above `exploding` × `first_norm`. Defaults to
            `100`.

    Returns:
        list of `(kind, layer, message)`, kind in `"non_finite"`, `"exploding"`, `"vanishing"`.
    """
    grad_norms = np.asarray(grad_norms, dtype="float64")
    weight_norms = np.asarray(weight_norms, dtype="float64")
    alerts = []
    if not np.isfinite(grad_norms).all():
        bad = [n for n, g in zip(names, grad_norms) if not np.isfinite(g)]
        alerts.append(("non_finite", bad[0], f"non-finite gradients in {', '.join(bad[:3])}: "
                       "the learning rate is too high (or the loss got a log(0))"))
        return alerts
    total = float(np.sqrt((grad_norms ** 2).sum()))
    if first_norm and first_norm > 0 and total > exploding * first_norm:
        alerts.append(("exploding", "*", f"gradient norm {total:.3g} is {total / first_norm:.0f}"
                       f"× its first value {first_norm:.3g}: exploding gradients — lower the "
                       "learning rate or clip gradients (clipnorm=1)"))
    relative = grad_norms / np.maximum(weight_norms, 1e-12)
    peak = relative.max() if relative.size else 0.0
    if peak > 0:
        for name, value in zip(names, relative):
            if value < vanishing * peak:
                alerts.append(("vanishing", name, f"{name}: relative gradient {value:.2e} is "
                               f"below {vanishing:g}× the largest ({peak:.2e}): vanishing "
                               "gradients — check the initialisation, add BatchNorm or residual "
                               "connections, or unfreeze"))
    return alerts


# ---------------------------------------------------------------------------------------------
# The callback.


def _activation_kind(layer):
    if isinstance(layer, keras.layers.ReLU):
        return "relu"
    if isinstance(layer, (keras.layers.LeakyReLU, keras.layers.ELU, keras.layers.PReLU)):
        return "leaky_relu"
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    name = keras.activations.serialize(activation)
    if isinstance(name, dict):
        name = name.get("config", "")
    name = str(name)
    return None if name == "linear" else name


def _monitored(submodel):
    """Layers of a functional/sequential model whose output is a nonlinearity."""
    found = []
    for layer in submodel.layers:
        if hasattr(layer, "layers"):
            continue
        kind = _activation_kind(layer)
        if kind is not None and kind != "softmax":
            found.append((layer, kind))
    return found


def _spread(items, limit):
    if len(items) <= limit:
        return items
    picks = np.unique(np.linspace(0, len(items) - 1, limit).round().astype(int))
    return [items[i] for i in picks]


class TrainingMonitor(keras.callbacks.Callback):
    """Logs per-layer activation and gradient statistics every `every` steps.

    On each log it runs the fixed `probe` batch through the model in inference mode (no
    BatchNorm statistic moves, no dropout noise, nothing in the model changes) with one extra
    forward and backward pass: the overhead is about 2–3 training steps per log, so ≤ 5 % of the
    time when logging every 100 steps (see `benchmarks/monitor_overhead.py`); between logs it
    does nothing (no per-step host sync). Works on the TensorFlow, JAX and torch backends (the
    probe is a `tf.function` / `jax.jit` function); TensorBoard output (`log_dir`) needs
    TensorFlow installed. "Dead" means never positive on the probe batch: on a pretrained
    backbone, deep channels selective for features absent from a small probe count as dead
    too, so probe with real images (≥ 32) and read the trend over steps.

    Args:
        probe: dataset of `(images, labels)` batches (its first batch is used) or an
            `(images, labels)` tuple of arrays.
        every: int. Log every this many training steps (and at the first step).
            Defaults to `100`.
        probe_size: int. Images of the probe batch. Defaults to `32`.
        max_layers: int. Monitor at most this many activation layers, spread evenly from input
            to output. Defaults to `24`.
        log_dir: optional str. Write scalars and histograms to TensorBoard here.
        dead: float. Warn when a ReLU layer has more than this fraction of dead units.
            Defaults to `0.5`.
        saturated: float. Warn when a tanh/sigmoid layer has more than this fraction of
            saturated values. Defaults to `0.5`.
        vanishing: float. See `gradient_alerts`. Defaults to `1e-4`.
        exploding: float. See `gradient_alerts`. Defaults to `100`.
        verbose: int. 1 prints a one-line summary per log. Defaults to `0`.

    Attributes:
        records: list of dicts, one per log: `step`, `activations` (layer → stats), `gradients`
            (layer → `grad_norm`, `weight_norm`, `relative`, `update_ratio`), `loss`.
        alerts: list of `(step, kind, layer, message)`; each also raised as a `UserWarning`
            once per kind and layer.

    Example:
    >>> monitor = TrainingMonitor(data.validation, every=100, log_dir="logs")
    >>> kr.fit(model, data.train, epochs=3, callbacks=[monitor])
    >>> monitor.plot("monitor.png"); monitor.plot_histograms("activations.png")
    """

    def __init__(self, probe, every=100, probe_size=32, max_layers=24, log_dir=None,
                 dead=0.5, saturated=0.5, vanishing=1e-4, exploding=100.0, verbose=0):
        super().__init__()
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive int. Received: every={every!r}")
        if not isinstance(probe_size, int) or probe_size < 1:
            raise ValueError(f"probe_size must be a positive int. Received: "
                             f"probe_size={probe_size!r}")
        for name, value in (("dead", dead), ("saturated", saturated)):
            if not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1]. Received: {name}={value!r}")
        images, labels, _ = take_batches(probe, max(1, math.ceil(probe_size / 8)))
        self.probe_images = images[:probe_size]
        self.probe_labels = keras.tree.map_structure(lambda y: y[:probe_size], labels)
        self.every = every
        self.max_layers = max_layers
        self.log_dir = log_dir
        self.dead = dead
        self.saturated = saturated
        self.vanishing = vanishing
        self.exploding = exploding
        self.verbose = verbose
        self.records = []
        self.alerts = []
        self.last_values = {}

    # Keras hooks.

    def on_train_begin(self, logs=None):
        self.records = []
        self.alerts = []
        self.last_values = {}
        self._warned = set()
        self._step = 0
        self._logged = 0
        self._previous = None
        self._probe_fn = None
        self._writer = None
        if self.log_dir:
            try:
                import tensorboard  # noqa: F401  (tf.summary needs it)
                import tensorflow as tf
            except ImportError:
                raise ImportError(
                    "TrainingMonitor(log_dir=...) writes TensorBoard summaries and needs "
                    "tensorflow and tensorboard: pip install 'kerasrecipes[tensorboard]'. "
                    f"Received: log_dir={self.log_dir!r}"
                ) from None
            self._writer = tf.summary.create_file_writer(self.log_dir)

    # A step is logged when the next one begins (or its epoch ends): a callback with
    # `on_train_batch_end` would make Keras turn every step's logs into Python floats (a host
    # sync per step) and turn off its asynchronous callback dispatch.
    def on_train_batch_begin(self, batch, logs=None):
        self._log_if_due()
        self._step += 1

    def on_epoch_end(self, epoch, logs=None):
        self._log_if_due()

    def _log_if_due(self):
        step = self._step
        if step > self._logged and (step == 1 or step % self.every == 0):
            self._logged = step
            self._log(step)

    def on_train_end(self, logs=None):
        self._log_if_due()
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None

    # Probing.

    def _build(self):
        """One compiled function: probe activations, loss and per-variable gradients.

        Every variable is read from the function's arguments (a `keras.StatelessScope`), so
        the same code differentiates on each backend and a compiled (`tf.function` /
        `jax.jit`) function never bakes in stale weights.
        """

        model = self.model
        try:
            parts = [model.get_layer(n) for n in ("preprocess", "backbone", "head")]
        except ValueError:
            parts = None
        if parts is None:
            stages = [(model, _monitored(model))]
        else:
            stages = [(p, _monitored(p)) for p in parts[1:]]
        chosen = _spread([(sub, layer, kind) for sub, found in stages
                          for layer, kind in found], self.max_layers)
        self._layers = [(layer.name, kind) for _, layer, kind in chosen]
        probes = []
        for sub, _ in stages:
            outputs = [layer.output for s, layer, _ in chosen if s is sub]
            probes.append((sub, keras.Model(sub.inputs, outputs) if outputs else None))
        preprocess = parts[0] if parts else None
        self._variables = [v for v in model.trainable_variables if len(v.shape) >= 2]
        chosen_ids = {id(v) for v in self._variables}
        self._others = [v for v in model.variables if id(v) not in chosen_ids]
        variables, others = self._variables, self._others
        weights = task_loss_weights(model) if is_multitask(model) else None
        probe_loss = loss_fn(model_loss(model, None), weights)

        def probe_fn(values, other_values, images, labels):
            state = list(zip(others, other_values))

            def forward(values):
                with keras.StatelessScope(state_mapping=list(zip(variables, values)) + state):
                    activations = []
                    x = preprocess(images, training=False) if preprocess is not None else images
                    for sub, probe_model in probes:
                        if probe_model is not None:
                            out = probe_model(x, training=False)
                            activations.extend(out if isinstance(out, (list, tuple)) else [out])
                        x = sub(x, training=False)
                    loss = probe_loss(labels, model(images, training=False))
                return loss, activations

            return value_and_gradients(forward, values)

        backend = keras.backend.backend()
        if backend == "tensorflow":
            import tensorflow as tf

            probe_fn = tf.function(probe_fn, reduce_retracing=True, autograph=False)
        elif backend == "jax":
            import jax

            probe_fn = jax.jit(probe_fn)
        self._probe_fn = probe_fn

    def _log(self, step):
        # Reading `self.model` makes the JAX trainer write its current state into the
        # variables (mid-epoch they are out of date, or purged).
        self.model  # noqa: B018
        if self._probe_fn is None:
            self._build()
        loss, activations, gradients = self._probe_fn(
            [keras.ops.convert_to_tensor(v) for v in self._variables],
            [keras.ops.convert_to_tensor(v) for v in self._others],
            self.probe_images, self.probe_labels)
        record = {"step": step, "loss": float(loss), "activations": {}, "gradients": {}}
        for (name, kind), values in zip(self._layers, activations):
            values = keras.ops.convert_to_numpy(values)
            record["activations"][name] = dict(activation_stats(values, kind), kind=kind)
            self.last_values[name] = values
        weights = [keras.ops.convert_to_numpy(v) for v in self._variables]
        grouped = {}
        for variable, weight, gradient in zip(self._variables, weights, gradients):
            layer = variable.path.rsplit("/", 1)[0].rsplit("/", 1)[-1]
            entry = grouped.setdefault(layer, [0.0, 0.0, 0.0])
            entry[0] += float(np.sum(np.square(keras.ops.convert_to_numpy(gradient),
                                               dtype="float64")))
            entry[1] += float(np.sum(np.square(weight, dtype="float64")))
            self.last_values[f"grad/{variable.path}"] = keras.ops.convert_to_numpy(gradient)
        if self._previous is not None:
            previous_step, previous_weights = self._previous
            for variable, weight, old in zip(self._variables, weights, previous_weights):
                layer = variable.path.rsplit("/", 1)[0].rsplit("/", 1)[-1]
                grouped[layer][2] += float(np.sum(np.square(weight - old, dtype="float64")))
        for layer, (g2, w2, d2) in grouped.items():
            entry = {"grad_norm": math.sqrt(g2), "weight_norm": math.sqrt(w2),
                     "relative": math.sqrt(g2) / max(math.sqrt(w2), 1e-12)}
            if self._previous is not None:
                entry["update_ratio"] = math.sqrt(d2) / max(math.sqrt(w2), 1e-12) / max(
                    1, step - self._previous[0])
            record["gradients"][layer] = entry
        self._previous = (step, weights)
        self.records.append(record)
        self._alert(record)
        self._summaries(record)
        if self.verbose:
            dead = max((s["dead_units"] for s in record["activations"].values()), default=0)
            total = math.sqrt(sum(e["grad_norm"] ** 2 for e in record["gradients"].values()))
            print(f"[TrainingMonitor] step {step}: probe loss {record['loss']:.4f}, gradient "
                  f"norm {total:.3g}, max dead units {dead:.0%}")

    def _alert(self, record):
        found = []
        for name, stats in record["activations"].items():
            if stats["dead_units"] > self.dead:
                found.append(("dead_units", name, f"{name}: {stats['dead_units']:.0%} of the "
                              "ReLU units are dead on the probe batch — lower the learning "
                              "rate, check the initialisation, or use leaky ReLU"))
            if stats["saturated_fraction"] > self.saturated:
                found.append(("saturated", name, f"{name}: {stats['saturated_fraction']:.0%} of "
                              f"the {stats['kind']} outputs are saturated — gradients vanish "
                              "there; normalise inputs, use Glorot init or ReLU"))
        names = list(record["gradients"])
        first = self.records[0]["gradients"] if self.records else {}
        first_norm = math.sqrt(sum(e["grad_norm"] ** 2 for e in first.values())) if first \
            else None
        if len(self.records) <= 1:
            first_norm = None
        found += gradient_alerts(names, [record["gradients"][n]["grad_norm"] for n in names],
                                 [record["gradients"][n]["weight_norm"] for n in names],
                                 first_norm, self.vanishing, self.exploding)
        for kind, layer, message in found:
            self.alerts.append((record["step"], kind, layer, message))
            if (kind, layer) not in self._warned:
                self._warned.add((kind, layer))
                warnings.warn(f"[TrainingMonitor] step {record['step']}: {message}",
                              stacklevel=2)

    def _summaries(self, record):
        if self._writer is None:
            return
        import tensorflow as tf

        step = record["step"]
        with self._writer.as_default(step=step):
            tf.summary.scalar("probe/loss", record["loss"])
            for name, stats in record["activations"].items():
                for key in ("mean", "std", "zero_fraction", "dead_units", "saturated_fraction"):
                    tf.summary.scalar(f"activations/{name}/{key}", stats[key])
                tf.summary.histogram(f"activations/{name}", self.last_values[name])
            for name, entry in record["gradients"].items():
                for key, value in entry.items():
                    tf.summary.scalar(f"gradients/{name}/{key}", value)
            for variable in self._variables:
                tf.summary.histogram(f"gradients/{variable.path}",
                                     self.last_values[f"grad/{variable.path}"])

    # Figures.

    def plot(self, path="monitor.png"):
        """Writes per-layer activation std, dead units, gradient and update ratios over steps."""
        if not self.records:
            raise ValueError("No records yet: train with the monitor among the callbacks first.")
        plt = pyplot()
        steps = [r["step"] for r in self.records]
        fig, axes = plt.subplots(2, 2, figsize=(12, 7))
        panels = (
            (axes[0, 0], "activations", "std", "activation std", False),
            (axes[0, 1], "activations", "dead_units", "dead units (ReLU) / saturated", False),
            (axes[1, 0], "gradients", "relative", "gradient norm / weight norm", True),
            (axes[1, 1], "gradients", "update_ratio", "update ratio ‖Δw‖/‖w‖ per step", True),
        )
        cmap = plt.get_cmap("viridis")
        for ax, group, key, title, log in panels:
            names = list(self.records[-1][group])
            for i, name in enumerate(names):
                values = []
                for r in self.records:
                    stats = r[group].get(name, {})
                    value = stats.get(key, math.nan)
                    if key == "dead_units" and stats.get("kind") in _SATURATING:
                        value = stats.get("saturated_fraction", math.nan)
                    values.append(value)
                ax.plot(steps, values, color=cmap(i / max(1, len(names) - 1)),
                        label=name if i in (0, len(names) - 1) else None)
            if key == "update_ratio":
                ax.axhline(1e-3, color="grey", linestyle="--", linewidth=1)
            if log:
                ax.set_yscale("log")
            ax.set_title(title)
            ax.set_xlabel("step")
            if names:
                ax.legend(fontsize=7, loc="best", title="first / last layer", title_fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path

    def plot_histograms(self, path="activations.png", max_panels=12):
        """Writes histograms of the last logged activations, one panel per layer."""
        names = [n for n, _ in getattr(self, "_layers", []) if n in self.last_values]
        if not names:
            raise ValueError("No records yet: train with the monitor among the callbacks first.")
        plt = pyplot()
        names = _spread(names, max_panels)
        columns = min(4, len(names))
        rows = math.ceil(len(names) / columns)
        fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.4 * rows),
                                 squeeze=False)
        for ax in axes.flat:
            ax.set_visible(False)
        stats = self.records[-1]["activations"]
        for ax, name in zip(axes.flat, names):
            ax.set_visible(True)
            ax.hist(self.last_values[name].reshape(-1), bins=50, color="tab:blue")
            ax.set_title(f"{name}\nzeros {stats[name]['zero_fraction']:.0%}", fontsize=8)
            ax.tick_params(labelsize=7)
        fig.suptitle(f"activations at step {self.records[-1]['step']}", fontsize=9)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path
