"""The record of a training run: `TrainingHistory`, its plot and its report.

`TrainingHistory` holds the per-epoch values of all stages of a run (`kr.fine_tune`, `kr.fit`,
`kr.fit_one_cycle`) as one record; `plot_history` draws the curves (learning rate on a second
axis, stage boundaries, the detected patterns named on the figure) and `history_report` writes
them as `report.md` with a verdict per pattern (`kerasrecipes.curves`) and what to do next.
"""

import dataclasses
import json
import math
import os

import numpy as np

from kerasrecipes.curves import CURVE_PATTERNS, diagnose_history
from kerasrecipes.plotting import pyplot


@dataclasses.dataclass
class TrainingHistory:
    """The history of all stages of a training run as one record.

    Attributes:
        history: dict of metric name → list of per-epoch values over all stages (`loss`,
            `accuracy`, `val_loss`, `val_accuracy`, `learning_rate`, …).
        stages: list of dicts, one per stage: `name`, `first_epoch`, `epochs`, `trainable_groups`,
            `learning_rate`.
    """

    history: dict = dataclasses.field(default_factory=dict)
    stages: list = dataclasses.field(default_factory=list)

    @property
    def epochs(self):
        return len(self.history.get("loss", []))

    def append_stage(self, stage, keras_history):
        """Appends the epochs of one stage (a Keras `History`, or anything with `.history`)."""
        offset = self.epochs
        epochs = len(keras_history.history.get("loss", []))
        for key, values in keras_history.history.items():
            column = self.history.setdefault(key, [math.nan] * offset)
            column.extend(float(v) for v in values)
        for column in self.history.values():
            column.extend([math.nan] * (offset + epochs - len(column)))
        self.stages.append(dict(stage, first_epoch=offset, epochs=epochs))

    def stage_metric(self, stage_index, metric="val_accuracy", best=max):
        """The best value of `metric` within one stage (None if it was not recorded)."""
        stage = self.stages[stage_index]
        values = self.history.get(metric, [])[stage["first_epoch"]:][: stage["epochs"]]
        values = [v for v in values if not math.isnan(v)]
        return best(values) if values else None

    def to_dict(self):
        return {"history": self.history, "stages": self.stages}

    def save_json(self, path):
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2)

    def plot(self, path):
        """Writes loss/accuracy curves (train and validation) with the LR to a PNG. Returns path."""
        return plot_history(self, path)

    def diagnose(self):
        """The curve patterns of the run: `kr.diagnose_history(self)`."""
        return diagnose_history(self)

    def report(self, directory, title=None):
        """Writes `report.md` and `history.png` into `directory`: the curves and a verdict per
        pattern they show (overfitting, LR too high, plateau, noisy …) with what to do next.

        Returns:
            str. The path of `report.md`.
        """
        return history_report(self, directory, title=title)


def plot_history(history, path, patterns=None):
    """Plots a `TrainingHistory` (or a Keras `History`, or a dict) to a PNG file; returns path.

    Loss and accuracy (every `*accuracy` metric of a multi-task model), train vs. validation, one
    panel each; the learning rate on a second axis of the loss panel; stage boundaries as dashed
    vertical lines; the curve patterns of `kr.diagnose_history` named above the panels (and the
    best validation-loss epoch marked when the run overfits).

    Args:
        history: `TrainingHistory`, Keras `History` or dict of metric → per-epoch values.
        path: str. The PNG file.
        patterns: optional list of `(pattern, message)`. Defaults to `diagnose_history(history)`.
    """
    plt = pyplot()

    record = getattr(history, "history", history)
    stages = getattr(history, "stages", None) or []
    patterns = diagnose_history(history) if patterns is None else patterns
    accuracies = [k for k in record if k.endswith("accuracy") and not k.startswith("val_")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for ax, metrics, title in ((axes[0], ["loss"], "loss"),
                               (axes[1], accuracies or ["accuracy"], "accuracy")):
        for metric in metrics:
            for prefix, style in (("", "-o"), ("val_", "-s")):
                values = record.get(prefix + metric)
                if values:
                    epochs = np.arange(1, len(values) + 1)
                    ax.plot(epochs, values, style, markersize=3,
                            label=(prefix or "train_") + metric)
        for stage in stages[1:]:
            ax.axvline(stage["first_epoch"] + 0.5, color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel("epoch")
        ax.set_title(title)
        if ax.get_lines():
            ax.legend(loc="best", fontsize=8)
    val_loss = np.asarray([math.nan if v is None else v for v in record.get("val_loss", [])],
                          dtype="float64")
    if any(p == "overfitting" for p, _ in patterns) and np.isfinite(val_loss).any():
        best = int(np.nanargmin(val_loss)) + 1
        axes[0].axvline(best, color="tab:red", linestyle=":", linewidth=1.5)
        axes[0].annotate(f"best val_loss (epoch {best})", (best, 1.0), xycoords=(
            "data", "axes fraction"), fontsize=8, color="tab:red", ha="left", va="top")
    if record.get("learning_rate"):
        lr_axis = axes[0].twinx()
        lrs = record["learning_rate"]
        lr_axis.plot(np.arange(1, len(lrs) + 1), lrs, color="tab:green", alpha=0.6, label="lr")
        lr_axis.set_ylabel("learning rate (end of epoch)", color="tab:green")
    problems = [CURVE_PATTERNS[p][1] for p, _ in patterns if p in CURVE_PATTERNS]
    fig.suptitle("detected: " + ", ".join(problems) if problems
                 else "no problem pattern detected", color="tab:red" if problems else
                 "tab:green", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def history_report(history, out_dir, title=None, gap=0.1, rise=0.1, plateau=0.02):
    """Writes `report.md` with the training curves and a verdict per pattern they show.

    The curves (`history.png`, `plot_history`: train vs. validation loss and accuracy, the
    learning rate on a second axis, the detected patterns named on the figure) and, for each
    pattern `diagnose_history` finds, what it means and what to do next.

    Args:
        history: `TrainingHistory`, Keras `History`, or dict of metric → per-epoch values.
        out_dir: str. Folder for `report.md` and `history.png` (created).
        title: optional str. The report's title. Defaults to `"Training report"`.
        gap: float. As in `diagnose_history`. Defaults to `0.1`.
        rise: float. As in `diagnose_history`. Defaults to `0.1`.
        plateau: float. As in `diagnose_history`. Defaults to `0.02`.

    Returns:
        str. The path of `report.md`.

    Example:
    >>> history = kr.fine_tune(model, data.train, data.validation)
    >>> kr.history.history_report(history, "run1")  # or history.report("run1")
    """
    record = getattr(history, "history", history)
    if not record.get("loss"):
        raise ValueError("history has no 'loss' values: pass the result of kr.fit / "
                         "kr.fine_tune / model.fit. Received keys: " + str(sorted(record)))
    os.makedirs(out_dir, exist_ok=True)
    patterns = diagnose_history(history, gap=gap, rise=rise, plateau=plateau)
    figure = plot_history(history, os.path.join(out_dir, "history.png"), patterns=patterns)
    problems = [(p, m) for p, m in patterns if p != "healthy"]
    icon = {"fail": "FAIL", "warn": "WARN"}
    lines = [f"# {title or 'Training report'}", "", *history_summary(history), ""]
    if problems:
        names = ", ".join(CURVE_PATTERNS[p][1] for p, _ in problems)
        lines.append(f"**Verdict: {len(problems)} pattern(s) in the curves: {names}.**")
    else:
        lines.append("**Verdict: no problem pattern in the curves** — training and validation "
                     "losses fall together.")
    lines += ["", f"![training curves]({os.path.basename(figure)})", ""]
    if problems:
        lines += ["| pattern | verdict | finding |", "| --- | --- | --- |"]
        for pattern, message in problems:
            lines.append(f"| {pattern} | {icon[CURVE_PATTERNS[pattern][0]]} | "
                         f"{message.replace('|', '/')} |")
        for pattern, message in problems:
            status, name, steps = CURVE_PATTERNS[pattern]
            lines += ["", f"## {pattern}: {icon[status]} ({name})", "", message, "",
                      "What to do next:", ""]
            lines += [f"{i}. {step}" for i, step in enumerate(steps, 1)]
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def history_summary(history):
    """Markdown lines: epochs, stages and the best validation values of a history."""
    record = getattr(history, "history", history)
    stages = getattr(history, "stages", None) or []
    parts = []
    for stage in stages:
        lr = stage.get("learning_rate")
        lr = f", peak lr {lr:.2g}" if isinstance(lr, (int, float)) else ""
        parts.append(f"{stage['name']} ({stage['epochs']} epoch(s){lr})")
    lines = [f"{len(record['loss'])} epoch(s)"
             + (f" in {len(stages)} stage(s): {', '.join(parts)}" if parts else "") + ".", ""]
    for key, pick in (("val_accuracy", np.nanargmax), ("val_loss", np.nanargmin),
                      ("accuracy", np.nanargmax), ("loss", np.nanargmin)):
        values = np.asarray([math.nan if v is None else v for v in record.get(key, [])],
                            dtype="float64")
        if values.size and np.isfinite(values).any():
            best = int(pick(values))
            lines.append(f"- best {key}: {values[best]:.4f} at epoch {best + 1} "
                         f"(last {values[-1]:.4f})")
    return lines
