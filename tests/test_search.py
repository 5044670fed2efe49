import os

import pytest

pytest.importorskip("optuna")

import kerasrecipes as kr  # noqa: E402
from kerasrecipes.search import (  # noqa: E402
    _TrialReporter,
    border_warnings,
    check_space,
    narrow_space,
    search,
)
from tiny_models import TINY, tiny_dataset  # noqa: E402

SPACE = {"lr": ("log", 1e-4, 1e-1), "dropout": ("float", 0.0, 0.5)}


def test_check_space_rejects_bad_ranges():
    assert check_space({"n": ("int", 1, 4)}) == {"n": ("int", 1, 4)}
    with pytest.raises(ValueError, match="low > 0"):
        check_space({"lr": ("log", 0.0, 1.0)})
    with pytest.raises(ValueError, match="low < high"):
        check_space({"dropout": ("float", 0.5, 0.1)})
    with pytest.raises(ValueError, match="kind in"):
        check_space({"lr": ("grid", 1, 2)})


def test_narrow_space_stays_inside_and_contains_the_best():
    space = {"lr": ("log", 1e-5, 1e-1), "dropout": ("float", 0.0, 0.5), "n": ("int", 1, 9),
             "opt": ("categorical", ["adam", "sgd"])}
    fine = narrow_space(space, {"lr": 1e-3, "dropout": 0.45, "n": 5, "opt": "sgd"})
    assert fine["lr"] == ("log", pytest.approx(1e-4), pytest.approx(1e-2))
    assert fine["dropout"] == ("float", pytest.approx(0.325), 0.5)
    assert fine["n"] == ("int", 3, 7)
    assert fine["opt"] == space["opt"]
    # Factor at least 2 for narrow log ranges, clipped to the old range.
    assert narrow_space({"lr": ("log", 1e-3, 2e-3)}, {"lr": 1.9e-3})["lr"] == (
        "log", pytest.approx(1e-3), pytest.approx(2e-3))


def test_border_warnings():
    assert border_warnings(SPACE, {"lr": 1e-2, "dropout": 0.2}) == []
    found = border_warnings(SPACE, {"lr": 0.09, "dropout": 0.0})
    assert len(found) == 2
    assert "lr=0.09 sits at the upper border" in found[0]
    assert "dropout=0 sits at the lower border" in found[1]


def test_hopeless_trials_stop_on_nan_and_divergence():
    import keras

    class Trial:
        def report(self, value, step):
            pass

        def should_prune(self):
            return False

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    reporter = _TrialReporter(Trial(), "val_accuracy")
    reporter.set_model(model)
    reporter.on_train_begin()
    reporter.on_train_batch_end(0, {"loss": 1.0})
    reporter.on_train_batch_end(1, {"loss": float("nan")})
    assert "nan" in reporter.pruned and model.stop_training
    model.stop_training = False
    reporter.on_train_begin()
    for step, loss in enumerate([1.0, 1.1, 1.2, 1.5, 2.0, 2.5, 3.5]):
        reporter.on_train_batch_end(step, {"loss": loss})
    assert "diverged" in reporter.pruned


def _build(calls):
    def build(params):
        calls.append(params)
        assert 0.0 <= params["dropout"] <= 0.5
        return kr.build_classifier(TINY, num_classes=3, weights=None, dropout=params["dropout"])

    return build


def test_two_stage_search_narrows_around_the_best_and_reports(tmp_path):
    calls = []
    db = str(tmp_path / "search.db")
    result = search(_build(calls), tiny_dataset(), tiny_dataset(seed=1), space=SPACE,
                    trials=(2, 2), epochs=(1, 2), storage=db, seed=1, verbose=0)
    assert os.path.exists(db)
    assert len(calls) == 4
    assert [t["stage"] for t in result.trials] == [0, 0, 1, 1]
    assert all(t["state"] in ("COMPLETE", "PRUNED") for t in result.trials)
    coarse, fine = result.spaces
    assert coarse == check_space(SPACE)
    stage0 = [t for t in result.trials if t["stage"] == 0 and t["state"] == "COMPLETE"]
    best0 = max(stage0, key=lambda t: t["value"])["params"]
    # The fine ranges sit inside the coarse ones around the coarse best.
    assert coarse["lr"][1] <= fine["lr"][1] <= best0["lr"] <= fine["lr"][2] <= coarse["lr"][2]
    assert fine["lr"][2] / fine["lr"][1] < coarse["lr"][2] / coarse["lr"][1]
    for t in result.trials:
        if t["stage"] == 1:
            assert fine["lr"][1] <= t["params"]["lr"] <= fine["lr"][2]
            assert t["epochs"] == 2
    assert result.best_params is not None and 0 <= result.best_value <= 1
    table = result.table()
    assert table.count("\n") == 1 + 4 and "| lr | dropout | val_accuracy |" in table
    assert open(result.plot(str(tmp_path / "s.png")), "rb").read(4) == b"\x89PNG"


def _analytic_train_fn(model, params, train, validation, epochs, callbacks):
    """No training: a smooth score peaking at lr=1e-2, so the storage logic is tested fast."""
    import math as m

    return {"val_accuracy": [1.0 / (1.0 + (m.log10(params["lr"]) + 2.0) ** 2)] * epochs}


def _trivial_build(calls):
    import keras

    def build(params):
        calls.append(params)
        return keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])

    return build


@pytest.mark.slow  # 14 s
def test_a_killed_search_resumes_where_it_stopped(tmp_path):
    db = str(tmp_path / "search.db")
    calls = []

    class Killed(Exception):
        pass

    def dies_on_third(params):
        if len(calls) == 2:
            raise Killed()
        return _trivial_build(calls)(params)

    kwargs = dict(space=SPACE, trials=(4, 3), epochs=(1, 2), storage=db, verbose=0,
                  train_fn=_analytic_train_fn)
    with pytest.raises(Killed):
        search(dies_on_third, None, None, **kwargs)
    assert len(calls) == 2
    first_params = [c["lr"] for c in calls]

    resumed = []
    result = search(_trivial_build(resumed), None, None, **kwargs)
    assert len(resumed) == 2 + 3  # only the missing coarse trials, then the fine stage
    complete = [t for t in result.trials if t["state"] == "COMPLETE"]
    assert len(complete) == 7
    assert not set(first_params) & {c["lr"] for c in resumed}  # no point drawn twice
    fine = result.spaces[1]
    assert fine["lr"][1] <= result.best_params["lr"] <= fine["lr"][2]
    # Nothing left to do: a third call trains nothing and reads the same results back.
    again = []
    same = search(_trivial_build(again), None, None, **kwargs)
    assert again == []
    assert same.best_params == result.best_params and same.spaces == result.spaces


def test_bad_arguments_name_the_argument(tmp_path):
    args = (_build([]), tiny_dataset(), tiny_dataset())
    with pytest.raises(ValueError, match="trials="):
        search(*args, trials=(0,), epochs=(1,), storage=str(tmp_path / "a.db"))
    with pytest.raises(ValueError, match="epochs="):
        search(*args, trials=(2, 2), epochs=(1,), storage=str(tmp_path / "a.db"))
    with pytest.raises(ValueError, match="sampler="):
        search(*args, sampler="grid", storage=str(tmp_path / "a.db"))


class _Trial:
    """An optuna trial stand-in whose pruner always says "prune"."""

    def __init__(self):
        self.reported = []

    def report(self, value, step):
        self.reported.append((step, value))

    def should_prune(self):
        return True


def test_the_median_pruner_is_never_asked_at_a_last_epoch():
    import keras

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.stop_training = False
    one_epoch = _TrialReporter(_Trial(), "val_accuracy", epochs=1)
    one_epoch.set_model(model)
    one_epoch.on_train_begin()
    one_epoch.on_epoch_end(0, {"val_accuracy": 0.1})
    assert one_epoch.pruned is None and not model.stop_training
    assert one_epoch.trial.reported == [(1, 0.1)]
    three_epochs = _TrialReporter(_Trial(), "val_accuracy", epochs=3)
    three_epochs.set_model(model)
    three_epochs.on_train_begin()
    three_epochs.on_epoch_end(0, {"val_accuracy": 0.1})
    assert "below the median at epoch 1" in three_epochs.pruned and model.stop_training


def _epoch_loop_train_fn(model, params, train, validation, epochs, callbacks):
    """A stand-in for fit: per-epoch scores from lr (best at 1e-2), growing with the epoch;
    drives the callbacks like Keras, so pruning decisions are real optuna ones. lr > 0.03
    "diverges" (NaN loss at the first step, before any epoch is reported)."""
    import math as m

    for callback in callbacks:
        callback.set_model(model)
        callback.on_train_begin()
    model.stop_training = False
    history = {"val_accuracy": []}
    for epoch in range(epochs):
        loss = float("nan") if params["lr"] > 0.03 else 1.0
        for callback in callbacks:
            callback.on_train_batch_end(0, {"loss": loss})
        if model.stop_training and not history["val_accuracy"]:
            break
        value = (epoch + 1) / epochs / (1.0 + (m.log10(params["lr"]) + 2.0) ** 2)
        history["val_accuracy"].append(value)
        for callback in callbacks:
            callback.on_epoch_end(epoch, {"val_accuracy": value})
        if model.stop_training:
            break
    return history


@pytest.mark.slow  # 30 s: the fast suite keeps the two-stage search
def test_one_epoch_stages_prune_no_trial_by_the_median_and_the_plot_shows_pruned_trials(
        tmp_path):
    calls = []
    result = search(_trivial_build(calls), None, None, space=SPACE, trials=(8, 6),
                    epochs=(1, 3), storage=str(tmp_path / "s.db"), seed=3, verbose=0,
                    train_fn=_epoch_loop_train_fn)
    stage0 = [t for t in result.trials if t["stage"] == 0]
    # Only diverging trials stop in the one-epoch stage; none "below the median at epoch 1".
    assert not any("median" in t["note"] for t in stage0)
    assert all(t["state"] == "COMPLETE" or "nan" in t["note"] for t in stage0)
    stage1 = [t for t in result.trials if t["stage"] == 1]
    median_pruned = [t for t in stage1 if "median" in t["note"]]
    assert median_pruned, [(t["state"], t["note"]) for t in stage1]
    # Pruned before the last epoch, with what they had reported until then.
    assert all(1 <= len(t["reported"]) < 3 for t in median_pruned)
    # Every trial is a point of the plot: complete ones, pruned ones at their last value,
    # diverged ones (no value) along the bottom.
    points = result.points("lr")
    assert len(points) == len(result.trials)
    for stage, trials in ((0, stage0), (1, stage1)):
        kinds = sorted(k for s, k, _, _ in points if s == stage)
        expected = sorted("complete" if t["state"] == "COMPLETE" else
                          "pruned" if t["reported"] else "stopped" for t in trials)
        assert kinds == expected
    assert {k for _, k, _, _ in points} == {"complete", "pruned", "stopped"}
    assert all(y is not None for _, k, _, y in points if k != "stopped")
    assert "(0." in result.table()  # a pruned trial's value, in parentheses
    assert open(result.plot(str(tmp_path / "s.png")), "rb").read(4) == b"\x89PNG"
