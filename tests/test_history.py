"""`TrainingHistory`, its plot and its report (`kerasrecipes.history`)."""

import pytest

import kerasrecipes as kr
from kerasrecipes.curves import CURVE_PATTERNS


# The training report: the curves and a verdict per pattern (TrainingHistory.report).

CURVES = {
    "overfitting": {"loss": [1.0, 0.6, 0.35, 0.2, 0.1, 0.05],
                    "val_loss": [1.0, 0.7, 0.6, 0.7, 0.85, 1.0]},
    "generalisation_gap": {"loss": [1.0, 0.5, 0.3, 0.2], "accuracy": [0.6, 0.8, 0.95, 0.99],
                           "val_loss": [1.0, 0.8, 0.75, 0.74],
                           "val_accuracy": [0.55, 0.65, 0.7, 0.72]},
    "loss_rising": {"loss": [1.0, 1.3, 1.8, 2.6], "val_loss": [1.0, 1.2, 1.7, 2.5]},
    "diverged": {"loss": [2.3, 5.0, float("nan")], "val_loss": [2.3, 6.0, float("nan")]},
    "plateau": {"loss": [2.3, 1.2, 1.15, 1.15, 1.15, 1.15], "accuracy": [0.1, 0.5, 0.5, 0.5,
                                                                          0.5, 0.5]},
    "noisy": {"loss": [1.0, 0.8, 0.6, 0.5, 0.4, 0.3],
              "val_loss": [1.0, 0.6, 0.9, 0.5, 0.8, 0.45]},
}
HEALTHY = {"loss": [1.0, 0.6, 0.4, 0.3, 0.25], "accuracy": [0.6, 0.8, 0.88, 0.9, 0.92],
           "val_loss": [1.0, 0.65, 0.45, 0.36, 0.32], "val_accuracy": [0.6, 0.78, 0.85, 0.88,
                                                                        0.9],
           "learning_rate": [1e-3, 1e-3, 5e-4, 2e-4, 1e-5]}


def _record(history):
    epochs = len(history["loss"])
    return kr.TrainingHistory(history={k: list(v) for k, v in history.items()},
                              stages=[{"name": "train", "first_epoch": 0, "epochs": epochs,
                                       "learning_rate": 1e-3}])


@pytest.mark.parametrize("pattern", sorted(CURVES))
def test_history_report_names_each_pattern_with_what_to_do(tmp_path, pattern):
    path = _record(CURVES[pattern]).report(str(tmp_path / "run"))
    text = open(path).read()
    status, name, steps = CURVE_PATTERNS[pattern]
    assert f"## {pattern}: {status.upper()} ({name})" in text
    assert f"| {pattern} | {status.upper()} |" in text
    verdict = next(line for line in text.splitlines() if line.startswith("**Verdict:"))
    assert "1 pattern(s) in the curves" in verdict and name in verdict
    assert "What to do next:" in text and f"1. {steps[0]}" in text
    for other in set(CURVES) - {pattern}:
        assert f"## {other}:" not in text
    assert "![training curves](history.png)" in text
    assert open(tmp_path / "run" / "history.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_a_healthy_history_report_has_no_verdict(tmp_path):
    path = _record(HEALTHY).report(str(tmp_path))
    text = open(path).read()
    assert "**Verdict: no problem pattern in the curves**" in text
    assert "## " not in text and "What to do next" not in text
    assert "- best val_accuracy: 0.9000 at epoch 5" in text
    assert "1 stage(s): train (5 epoch(s), peak lr 0.001)" in text


def test_the_figure_names_the_patterns(tmp_path, monkeypatch):
    import matplotlib.figure

    titles = []
    save = matplotlib.figure.Figure.savefig

    def spy(fig, *args, **kwargs):
        titles.append(fig._suptitle.get_text())
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    kr.plot_history(_record(CURVES["overfitting"]), str(tmp_path / "a.png"))
    kr.plot_history(CURVES["noisy"], str(tmp_path / "b.png"))  # a plain dict works too
    kr.plot_history(_record(HEALTHY), str(tmp_path / "c.png"))
    assert titles == ["detected: overfitting", "detected: noisy curves",
                      "no problem pattern detected"]


def test_validation_patterns_skip_epochs_without_validation():
    # A head stage without validation data (NaN), then a stage that overfits from epoch 4.
    nan = float("nan")
    history = {"loss": [2.0, 1.5, 1.0, 0.7, 0.5, 0.3, 0.2],
               "val_loss": [nan, nan, 1.1, 0.9, 1.0, 1.1, 1.2]}
    found = dict(_record(history).diagnose())
    assert "since epoch 4" in found["overfitting"]
