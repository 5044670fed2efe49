"""Random hyperparameter search, coarse → fine, on optuna.

The babysitting chapter's recipe: prefer **random search** to grid search (each trial tries a new
value of every hyperparameter, so the important ones get explored), sample the learning rate and
weight decay on a **log scale**, search in **stages** — short runs (≤ 1 epoch) over wide ranges,
then longer runs in a range narrowed around the best — and widen a range when its best value sits
at the border.

Why optuna (not keras-tuner): its trials live in a plain SQLite file (a killed search resumes
where it stopped, and the database can be read by other tools), its `RandomSampler` and pruners
are independent of the training loop, and it does not need the model to be built inside a
tuner-specific `HyperModel` — `build_fn(params)` returns any Keras model.

Reference: Bergstra & Bengio, "Random Search for Hyper-Parameter Optimization" (JMLR 2012);
Akiba et al., "Optuna: A Next-generation Hyperparameter Optimization Framework" (2019).
"""

import dataclasses
import json
import math
import os
import time

import keras

from kerasrecipes.batches import as_batches
from kerasrecipes.plotting import pyplot

KINDS = ("log", "float", "int", "categorical")
DEFAULT_SPACE = {
    "lr": ("log", 1e-5, 1e-1),
    "weight_decay": ("log", 1e-6, 1e-2),
    "dropout": ("float", 0.0, 0.5),
}


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ImportError(
            "kr.search needs optuna: pip install 'kerasrecipes[search]' (or pip install optuna)."
        ) from None
    return optuna


# ---------------------------------------------------------------------------------------------
# Pure functions on search spaces.


def check_space(space):
    """Validates a search space and returns it as `{name: (kind, ...)}` with tuples.

    Args:
        space: dict of name → `("log", low, high)` (log-uniform), `("float", low, high)`
            (uniform), `("int", low, high)` (uniform, inclusive) or `("categorical", [choices])`.

    Returns:
        dict.
    """
    if not isinstance(space, dict) or not space:
        raise ValueError(f"space must be a non-empty dict of name -> (kind, ...). "
                         f"Received: space={space!r}")
    checked = {}
    for name, spec in space.items():
        if not isinstance(spec, (tuple, list)) or not spec or spec[0] not in KINDS:
            raise ValueError(f"space[{name!r}] must be (kind, ...) with kind in {KINDS}. "
                             f"Received: space[{name!r}]={spec!r}")
        kind = spec[0]
        if kind == "categorical":
            if len(spec) != 2 or not list(spec[1]):
                raise ValueError(f"space[{name!r}] must be ('categorical', [choices]). "
                                 f"Received: space[{name!r}]={spec!r}")
            checked[name] = ("categorical", list(spec[1]))
            continue
        if len(spec) != 3 or not spec[1] < spec[2]:
            raise ValueError(f"space[{name!r}] must be ({kind!r}, low, high) with low < high. "
                             f"Received: space[{name!r}]={spec!r}")
        if kind == "log" and spec[1] <= 0:
            raise ValueError(f"A log range needs low > 0. Received: space[{name!r}]={spec!r}")
        low, high = (int(spec[1]), int(spec[2])) if kind == "int" else (float(spec[1]),
                                                                         float(spec[2]))
        checked[name] = (kind, low, high)
    return checked


def narrow_space(space, best, width=0.25, factor=None):
    """The fine stage's ranges: each numeric range narrowed around the best value.

    Args:
        space: the coarse space (see `check_space`).
        best: dict of name → best value found.
        width: float. Half-width of a new linear range as a fraction of the old one.
            Defaults to `0.25`.
        factor: optional float. A log range becomes `[best / factor, best * factor]`.
            Defaults to `(high / low) ** 0.25`, at least 2 (a quarter of the decades each
            side, never less than ×2).

    Returns:
        dict like `space`, every range inside the old one and containing `best`.

    Example:
    >>> narrow_space({"lr": ("log", 1e-5, 1e-1)}, {"lr": 1e-3})["lr"]  # ("log", 1e-4, 1e-2)
    """
    narrowed = {}
    for name, spec in check_space(space).items():
        kind = spec[0]
        if kind == "categorical" or name not in best:
            narrowed[name] = spec
            continue
        low, high = spec[1], spec[2]
        value = min(max(best[name], low), high)
        if kind == "log":
            f = factor or max(2.0, (high / low) ** 0.25)
            new = (max(low, value / f), min(high, value * f))
        else:
            half = width * (high - low)
            new = (max(low, value - half), min(high, value + half))
            if kind == "int":
                new = (int(math.floor(new[0])), int(math.ceil(new[1])))
                if new[0] == new[1]:
                    new = (max(low, new[0] - 1), min(high, new[1] + 1))
        narrowed[name] = (kind, *new) if new[0] < new[1] else spec
    return narrowed


def border_warnings(space, best, margin=0.05):
    """Warns for each best value sitting at the border of its range (widen that range).

    Args:
        space: the searched space.
        best: dict of name → best value.
        margin: float. "At the border" = within this fraction of the range (in log10 for log
            ranges). Defaults to `0.05`.

    Returns:
        list of str.

    Example:
    >>> border_warnings({"lr": ("log", 1e-5, 1e-1)}, {"lr": 0.09})  # ["best lr=0.09 sits ..."]
    """
    found = []
    for name, spec in check_space(space).items():
        if spec[0] == "categorical" or name not in best:
            continue
        low, high = spec[1], spec[2]
        if spec[0] == "log":
            position = (math.log10(best[name]) - math.log10(low)) / (math.log10(high)
                                                                      - math.log10(low))
        else:
            position = (best[name] - low) / (high - low)
        side = "lower" if position <= margin else "upper" if position >= 1 - margin else None
        if side:
            found.append(f"best {name}={best[name]:.4g} sits at the {side} border of "
                         f"[{low:g}, {high:g}]: the optimum may lie outside — widen the range "
                         "and search again")
    return found


def _suggest(trial, space):
    params = {}
    for name, spec in space.items():
        kind = spec[0]
        if kind == "log":
            params[name] = trial.suggest_float(name, spec[1], spec[2], log=True)
        elif kind == "float":
            params[name] = trial.suggest_float(name, spec[1], spec[2])
        elif kind == "int":
            params[name] = trial.suggest_int(name, spec[1], spec[2])
        else:
            params[name] = trial.suggest_categorical(name, spec[1])
    return params


# ---------------------------------------------------------------------------------------------
# Training a trial.


class _TrialReporter(keras.callbacks.Callback):
    """Reports the metric per epoch to optuna and stops hopeless trials early.

    Hopeless: a NaN/inf loss, or a running loss above `diverge` × the first batch's loss after
    a few steps — the learning rate is far too high, nothing is learnt by going on. The median
    pruner is asked only after epochs that have another one to come (`epochs`): a trial at its
    last epoch (every trial of a one-epoch stage) has already cost all it will, and is kept.
    """

    def __init__(self, trial, metric, epochs=None, diverge=3.0):
        super().__init__()
        self.trial = trial
        self.metric = metric
        self.epochs = epochs
        self.diverge = diverge
        self.pruned = None
        self._first = None
        self._epoch = 0

    def on_train_begin(self, logs=None):
        self.pruned = None
        self._first = None

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", math.nan))
        if self._first is None:
            self._first = loss
        if not math.isfinite(loss):
            self.pruned = f"loss became {loss} at step {batch + 1}"
        elif batch >= 5 and self._first and loss > self.diverge * self._first:
            self.pruned = f"loss diverged ({self._first:.3g} → {loss:.3g})"
        if self.pruned:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.metric)
        self._epoch += 1
        if value is None or self.pruned:
            return
        self.trial.report(float(value), self._epoch)
        last = self.epochs is not None and self._epoch >= self.epochs
        if not last and self.trial.should_prune():
            self.pruned = f"{self.metric}={float(value):.4g} below the median at epoch {epoch + 1}"
            self.model.stop_training = True


def default_train_fn(model, params, train, validation, epochs, callbacks, steps_per_epoch=None):
    """Trains one trial with `kr.fit`: `params["lr"]`, `params.get("weight_decay")`,
    `params.get("optimizer", "adamw")`, warmup + cosine over the trial's epochs.

    Returns:
        dict of metric → per-epoch values.
    """
    from kerasrecipes.train import fit

    history = fit(model, train, validation, epochs=epochs, lr=float(params.get("lr", 1e-3)),
                  optimizer=params.get("optimizer", "adamw"),
                  weight_decay=params.get("weight_decay"), callbacks=callbacks,
                  steps_per_epoch=steps_per_epoch, verbose=0)
    return history.history


# ---------------------------------------------------------------------------------------------
# The search.


@dataclasses.dataclass
class SearchResult:
    """Every trial of a staged search, the best one and the warnings.

    Attributes:
        trials: list of dicts: `stage`, `number`, `params`, `value`, `state` (`COMPLETE`,
            `PRUNED`, `FAIL`, `RUNNING`), `epochs`, `reported` (the metric after each epoch
            run, also for pruned trials), `seconds`, `note`.
        spaces: list of the space searched by each stage.
        metric: str. The metric optimised.
        direction: str. `"maximize"` or `"minimize"`.
        warnings: list of str. Best values at the border of their range.
        storage: str. The optuna storage URL (SQLite file) holding the trials.
    """

    trials: list
    spaces: list
    metric: str
    direction: str
    warnings: list
    storage: str

    def _complete(self, stage=None):
        return [t for t in self.trials if t["state"] == "COMPLETE" and t["value"] is not None
                and math.isfinite(t["value"]) and (stage is None or t["stage"] == stage)]

    def _pruned(self, stage):
        """Pruned trials of a stage with their best reported value (None: stopped before any)."""
        pick = max if self.direction == "maximize" else min
        found = []
        for t in self.trials:
            if t["state"] != "PRUNED" or t["stage"] != stage:
                continue
            reported = [v for v in t.get("reported", []) if v is not None and math.isfinite(v)]
            found.append((t, pick(reported) if reported else None))
        return found

    @property
    def best(self):
        """The best complete trial of the last stage that has one (longer runs count most)."""
        for stage in reversed(range(len(self.spaces))):
            done = self._complete(stage)
            if done:
                pick = max if self.direction == "maximize" else min
                return pick(done, key=lambda t: t["value"])
        return None

    @property
    def best_params(self):
        return None if self.best is None else dict(self.best["params"])

    @property
    def best_value(self):
        return None if self.best is None else self.best["value"]

    def table(self):
        """The trials as a Markdown table, best first within each stage."""
        names = list(self.spaces[0]) if self.spaces else []
        lines = ["| stage | trial | " + " | ".join(names) + f" | {self.metric} | state |",
                 "| --- | --- | " + " | ".join("---" for _ in names) + " | --- | --- |"]
        sign = -1 if self.direction == "maximize" else 1
        for trial in sorted(self.trials, key=lambda t: (
                t["stage"], t["value"] is None or not math.isfinite(t["value"]),
                sign * (t["value"] if t["value"] is not None and math.isfinite(t["value"])
                        else 0))):
            cells = [_fmt(trial["params"].get(n)) for n in names]
            value = "" if trial["value"] is None else f"{trial['value']:.4f}"
            reported = [v for v in trial.get("reported", []) if v is not None
                        and math.isfinite(v)]
            if trial["state"] == "PRUNED" and reported:
                # The best value before it was stopped, not comparable with complete runs.
                value = f"({(max if sign < 0 else min)(reported):.4f})"
            lines.append(f"| {trial['stage']} | {trial['number']} | " + " | ".join(cells)
                         + f" | {value} | {trial['state']} |")
        return "\n".join(lines)

    def points(self, name):
        """What `plot` draws for one hyperparameter: one point per complete or pruned trial.

        Args:
            name: str. A hyperparameter of the space.

        Returns:
            list of `(stage, kind, x, y)`: kind `"complete"` (y = its value), `"pruned"` (y =
            the best value it reported before being stopped) or `"stopped"` (stopped before
            reporting any, NaN or diverging loss: y is None).
        """
        found = []
        for stage in range(len(self.spaces)):
            for t in self._complete(stage):
                if name in t["params"]:
                    found.append((stage, "complete", t["params"][name], t["value"]))
            for t, value in self._pruned(stage):
                if name in t["params"]:
                    found.append((stage, "stopped" if value is None else "pruned",
                                  t["params"][name], value))
        return found

    def plot(self, path="search.png"):
        """Scatter of the metric against each hyperparameter (log axes for log ranges).

        Complete trials are dots; pruned trials are crosses at the best value they reported
        before they were stopped, or triangles along the bottom of the axis when they were
        stopped before reporting any (NaN or diverging loss).
        """
        plt = pyplot()
        space = self.spaces[0]
        names = list(space)
        fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.4), squeeze=False)
        colors = ("tab:blue", "tab:orange", "tab:green", "tab:red")
        styles = {"complete": ("o", "stage {} ({} ep)"),
                  "pruned": ("x", "stage {} pruned (value when stopped)"),
                  "stopped": ("v", "stage {} stopped (NaN / diverged)")}
        for ax, name in zip(axes[0], names):
            points = self.points(name)
            # "stopped" last: those trials have no value and go along the bottom edge.
            for kind, (marker, label) in styles.items():
                floor = ax.get_ylim()[0]
                for stage in range(len(self.spaces)):
                    chosen = [(x, y) for s, k, x, y in points if s == stage and k == kind]
                    if not chosen:
                        continue
                    epochs = next(t["epochs"] for t in self.trials if t["stage"] == stage)
                    x = [str(v) if space[name][0] == "categorical" else v for v, _ in chosen]
                    y = [floor if kind == "stopped" else v for _, v in chosen]
                    ax.scatter(x, y, color=colors[stage % 4], marker=marker, s=28,
                               label=label.format(stage, epochs))
            if space[name][0] == "log":
                ax.set_xscale("log")
            if self.best is not None and name in self.best["params"] and \
                    space[name][0] != "categorical":
                ax.axvline(self.best["params"][name], color="grey", linestyle="--",
                           linewidth=1)
            ax.set_xlabel(name + (" (log)" if space[name][0] == "log" else ""))
            ax.set_ylabel(self.metric)
            ax.legend(fontsize=7, framealpha=0.6)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.3g}"
    return "" if value is None else str(value)


def search(build_fn, train, validation, space=None, trials=(8, 4), epochs=(1, 3),
           metric="val_accuracy", direction=None, storage="kerasrecipes_search.db",
           study_name="search", seed=0, sampler="random", train_fn=None, steps_per_epoch=None,
           prune=True, verbose=1, batch_size=None):
    """Random search in stages, coarse → fine, resumable from a SQLite file.

    Stage 0 samples `trials[0]` points of `space` and trains each for `epochs[0]` epochs;
    every next stage narrows the numeric ranges around the previous stage's best
    (`narrow_space`) and trains `trials[i]` points for `epochs[i]` epochs. Hopeless trials stop
    early (NaN or diverging loss), and, in multi-epoch stages, trials below the median of the
    others at the same epoch are pruned before their last epoch (`optuna.pruners.MedianPruner`;
    one-epoch stages run every trial to its end). Run again with the same `storage` and
    `study_name` and a search continues where it stopped: finished trials are kept, only the
    missing ones run.

    Args:
        build_fn: callable `params -> keras.Model` (e.g. reads `params["dropout"]`).
        train: training dataset of `(images, labels)` batches, or `(x, y)` arrays (as
            `keras.Model.fit` takes them; see `batch_size`).
        validation: validation dataset (or arrays).
        space: dict of name → `("log", low, high)`, `("float", low, high)`, `("int", low, high)`
            or `("categorical", [choices])`. Defaults to `DEFAULT_SPACE` (lr and weight decay
            log-uniform, dropout uniform).
        trials: tuple of ints. Trials per stage. Defaults to `(8, 4)`.
        epochs: tuple of ints, one per stage. Defaults to `(1, 3)`.
        metric: str. Logged metric to optimise. Defaults to `"val_accuracy"`.
        direction: optional str. `"maximize"` or `"minimize"`. Defaults to minimise for names
            containing "loss", else maximise.
        storage: str. SQLite file (or any optuna storage URL). Defaults to
            `"kerasrecipes_search.db"`.
        study_name: str. Stage `i` is the optuna study `"{study_name}-stage{i}"`.
            Defaults to `"search"`.
        seed: int. Seed of the sampler. Defaults to `0`.
        sampler: `"random"` or `"tpe"`. Defaults to `"random"`.
        train_fn: optional callable `(model, params, train, validation, epochs, callbacks) ->
            dict of metric -> per-epoch values`. Defaults to `default_train_fn` (`kr.fit`).
        steps_per_epoch: optional int. Cap the steps of an epoch (shorter trials).
        prune: bool. Prune hopeless and below-median trials. Defaults to `True`.
        verbose: int. Print one line per trial. Defaults to `1`.
        batch_size: optional int. Batch size when `train` / `validation` are arrays. Defaults to
            `None` (32).

    Returns:
        `SearchResult`.

    Example:
    >>> def build(params):
    ...     return kr.build_classifier("efficientnet_lite0", 10, dropout=params["dropout"])
    >>> result = kr.search(build, data.train, data.validation, trials=(8, 4), epochs=(1, 3))
    >>> print(result.table()); result.plot("search.png"); result.best_params
    """
    optuna = _optuna()
    space = check_space(DEFAULT_SPACE if space is None else space)
    # A custom train_fn reads the data itself (it may take none: train=None).
    train = as_batches(train, batch_size, "train", shuffle=True, allow_none=train_fn is not None)
    validation = as_batches(validation, batch_size, "validation", allow_none=True)
    trials = tuple(trials) if isinstance(trials, (tuple, list)) else (trials,)
    epochs = tuple(epochs) if isinstance(epochs, (tuple, list)) else (epochs,)
    if not trials or any(not isinstance(n, int) or n < 1 for n in trials):
        raise ValueError(f"trials must be positive ints, one per stage. Received: "
                         f"trials={trials!r}")
    if len(epochs) != len(trials) or any(not isinstance(e, int) or e < 1 for e in epochs):
        raise ValueError(f"epochs must be positive ints, one per stage (len(trials)="
                         f"{len(trials)}). Received: epochs={epochs!r}")
    if sampler not in ("random", "tpe"):
        raise ValueError(f"sampler must be 'random' or 'tpe'. Received: sampler={sampler!r}")
    direction = direction or ("minimize" if "loss" in metric else "maximize")
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction must be 'maximize' or 'minimize'. "
                         f"Received: direction={direction!r}")
    url = storage if "://" in storage else f"sqlite:///{os.path.abspath(storage)}"
    train_fn = train_fn or (lambda model, params, tr, va, ep, cbs: default_train_fn(
        model, params, tr, va, ep, cbs, steps_per_epoch))
    if not verbose:
        optuna.logging.set_verbosity(optuna.logging.WARNING)

    spaces, records, warnings_found = [], [], []
    best_params = None
    for stage, (n_trials, n_epochs) in enumerate(zip(trials, epochs)):
        # Median pruning compares epochs of unfinished runs: a one-epoch stage has none.
        pruner = (optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
                  if prune and n_epochs > 1 else optuna.pruners.NopPruner())
        name = f"{study_name}-stage{stage}"
        study = optuna.create_study(study_name=name, storage=url, direction=direction,
                                    pruner=pruner, load_if_exists=True)
        if "space" in study.user_attrs:
            # Resumed: keep the ranges this stage was started with.
            stage_space = {k: tuple(v) for k, v in study.user_attrs["space"].items()}
        else:
            stage_space = space if stage == 0 or best_params is None else narrow_space(
                spaces[-1], best_params)
            study.set_user_attr("space", {k: list(v) for k, v in stage_space.items()})
            study.set_user_attr("epochs", n_epochs)
        spaces.append(stage_space)
        done_states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        finished = sum(t.state in done_states for t in study.trials)
        remaining = n_trials - finished
        if remaining > 0:
            # A fresh seed per (stage, resume point): a resumed search does not redraw the
            # points it already tried.
            stage_seed = seed + 1000 * stage + len(study.trials)
            study.sampler = (optuna.samplers.RandomSampler(seed=stage_seed) if sampler == "random"
                             else optuna.samplers.TPESampler(seed=stage_seed))
            if verbose:
                print(f"[kerasrecipes search] stage {stage}: {remaining} trial(s) of {n_epochs} "
                      f"epoch(s) ({finished} done) over "
                      + ", ".join(f"{k} {_range(v)}" for k, v in stage_space.items()), flush=True)
            study.optimize(
                lambda trial: _objective(trial, stage_space, build_fn, train_fn, train,
                                         validation, n_epochs, metric, direction, prune,
                                         verbose, optuna),
                n_trials=remaining,
            )
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE
                    and t.value is not None and math.isfinite(t.value)]
        if complete:
            best = (max if direction == "maximize" else min)(complete, key=lambda t: t.value)
            best_params = dict(best.params)
            warnings_found += [f"stage {stage}: {w}"
                               for w in border_warnings(space, best_params)]
        for t in study.trials:
            records.append({
                "stage": stage, "number": t.number, "params": dict(t.params),
                "value": t.value, "state": t.state.name, "epochs": n_epochs,
                "reported": [t.intermediate_values[k] for k in sorted(t.intermediate_values)],
                "seconds": (t.duration.total_seconds() if t.duration else None),
                "note": t.user_attrs.get("note", ""),
            })
    result = SearchResult(records, spaces, metric, direction, sorted(set(warnings_found)), url)
    if verbose:
        for warning in result.warnings:
            print(f"[kerasrecipes search] warning: {warning}")
        if result.best is not None:
            print(f"[kerasrecipes search] best {metric} {result.best_value:.4f} with "
                  + json.dumps({k: float(f"{v:.4g}") if isinstance(v, float) else v
                                for k, v in result.best_params.items()}))
    return result


def _range(spec):
    if spec[0] == "categorical":
        return str(spec[1])
    return f"[{spec[1]:.3g}, {spec[2]:.3g}]" + (" log" if spec[0] == "log" else "")


def _objective(trial, space, build_fn, train_fn, train, validation, epochs, metric, direction,
               prune, verbose, optuna):
    params = _suggest(trial, space)
    keras.utils.clear_session()
    start = time.time()
    model = build_fn(dict(params))
    reporter = _TrialReporter(trial, metric, epochs)
    history = train_fn(model, dict(params), train, validation, epochs,
                       [reporter] if prune else [])
    seconds = time.time() - start
    values = [v for v in history.get(metric, []) if v is not None and math.isfinite(v)]
    if prune and reporter.pruned:
        trial.set_user_attr("note", reporter.pruned)
        if verbose:
            print(f"[kerasrecipes search]   trial {trial.number}: pruned ({reporter.pruned}) "
                  f"{_params(params)}", flush=True)
        raise optuna.TrialPruned(reporter.pruned)
    if not values:
        raise ValueError(f"The training history has no finite {metric!r} values: is there "
                         f"validation data, and is the metric logged? Received: metric={metric!r}")
    # The best epoch of the run: what early stopping with restored weights would keep.
    value = max(values) if direction == "maximize" else min(values)
    if verbose:
        print(f"[kerasrecipes search]   trial {trial.number}: {metric} {value:.4f} "
              f"({seconds:.0f} s) {_params(params)}", flush=True)
    return value


def _params(params):
    return ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())
