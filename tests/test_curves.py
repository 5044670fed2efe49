"""The named patterns of training curves (`kerasrecipes.curves`): pure functions of numbers."""

import pytest

from kerasrecipes.curves import CURVE_PATTERNS, diagnose_history


@pytest.mark.parametrize(
    "history, pattern",
    [
        ({"loss": [1.0, 0.6, 0.4, 0.3], "val_loss": [1.0, 0.7, 0.5, 0.45]}, "healthy"),
        ({"loss": [1.0, 0.5, 0.2, 0.1, 0.05], "val_loss": [1.0, 0.7, 0.8, 0.9, 1.1]},
         "overfitting"),
        ({"loss": [1.0, 1.2, 1.6, 2.5]}, "loss_rising"),
        ({"loss": [1.0, float("nan")]}, "diverged"),
        ({"loss": [2.3, 2.29, 2.29, 2.29, 2.29, 2.29], "accuracy": [0.1] * 6}, "plateau"),
        ({"loss": [1.0, 0.8, 0.6, 0.5, 0.4, 0.3], "val_loss": [1.0, 0.6, 0.9, 0.5, 0.8, 0.45]},
         "noisy"),
        ({"loss": [1.0, 0.5, 0.3], "accuracy": [0.7, 0.9, 0.99], "val_accuracy": [0.6, 0.7, 0.7]},
         "generalisation_gap"),
    ],
)
def test_diagnose_history_names_the_pattern(history, pattern):
    assert pattern in [p for p, _ in diagnose_history(history)]


def test_plateau_tells_a_too_high_from_a_too_low_learning_rate():
    fast_then_flat = dict(diagnose_history({"loss": [2.3, 1.2, 1.15, 1.15, 1.15, 1.15],
                                            "accuracy": [0.1, 0.5, 0.5, 0.5, 0.5, 0.5]}))["plateau"]
    assert "too high" in fast_then_flat
    slow = dict(diagnose_history({"loss": [2.3, 2.29, 2.28, 2.28, 2.28, 2.28],
                                  "accuracy": [0.1] * 6}))["plateau"]
    assert "too low" in slow


def test_every_pattern_has_a_verdict_a_name_and_next_steps():
    for pattern, (status, name, steps) in CURVE_PATTERNS.items():
        assert status in ("fail", "warn") and name and steps, pattern
