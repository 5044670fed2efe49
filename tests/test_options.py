"""The options the training recipes share: one definition, every value checked up front."""

import dataclasses
import inspect
import warnings

import keras
import pytest

import kerasrecipes as kr
from kerasrecipes.options import OPTION_NAMES, TrainingOptions
from tiny_models import TINY, tiny_batches

RECIPES = {"fine_tune": kr.fine_tune, "fit": kr.fit, "fit_one_cycle": kr.fit_one_cycle}


class _Untouchable(keras.utils.PyDataset):
    """A dataset that fails the test the moment anything reads it."""

    def __len__(self):
        raise AssertionError("the data was touched before the options were checked")

    def __getitem__(self, index):
        raise AssertionError("the data was touched before the options were checked")


@pytest.fixture(scope="module")
def model():
    return kr.build_classifier(TINY, num_classes=3, weights=None)


def test_the_three_recipes_take_every_shared_option_by_construction():
    fields = {f.name: f.default for f in dataclasses.fields(TrainingOptions)}
    for name, recipe in RECIPES.items():
        parameters = inspect.signature(recipe).parameters
        for option, default in fields.items():
            assert option in parameters, (name, option)
            assert parameters[option].kind is inspect.Parameter.KEYWORD_ONLY
            expected = 3 if (name, option) == ("fine_tune", "early_stopping") else default
            assert parameters[option].default == expected, (name, option)
        assert f"{OPTION_NAMES[-1]}:" in recipe.__doc__  # the shared options are documented
    # What fit_one_cycle used to lack.
    parameters = inspect.signature(kr.fit_one_cycle).parameters
    assert "label_smoothing" in parameters and "backup_dir" in parameters


def test_fit_one_cycle_uses_label_smoothing_and_backup_dir(tmp_path):
    keras.utils.set_random_seed(0)
    model = kr.build_classifier(TINY, num_classes=3, weights=None)
    backup = tmp_path / "run.backup"
    history = kr.fit_one_cycle(model, tiny_batches(), epochs=1, lr=1e-3, label_smoothing=0.2,
                               backup_dir=str(backup), verbose=0)
    assert isinstance(model.loss, kr.CrossEntropy) and model.loss.label_smoothing == 0.2
    assert history.epochs == 1 and not backup.exists()  # removed once the run completed


BAD = [
    # (recipes, keyword arguments, the message)
    (("fit", "fit_one_cycle"), {"epochs": 0}, r"epochs must be an int >= 1\. Received: epochs=0"),
    (("fit", "fit_one_cycle"), {"epochs": -2}, r"epochs=-2"),
    (("fit", "fit_one_cycle"), {"epochs": 2.5}, r"epochs must be an int >= 1.*epochs=2\.5"),
    (("fit",), {"epochs": True}, r"epochs=True"),
    (("fine_tune",), {"epochs": -1}, r"epochs must be an int >= 0\. Received: epochs=-1"),
    (("fine_tune",), {"head_epochs": -1}, r"head_epochs must be an int >= 0.*head_epochs=-1"),
    (("fine_tune",), {"head_epochs": 0, "epochs": 0}, r"nothing to train"),
    (("fine_tune", "fit", "fit_one_cycle"), {"lr": 0}, r"lr must be a number > 0.*Received: lr=0"),
    (("fine_tune", "fit", "fit_one_cycle"), {"lr": -1e-3}, r"lr=-0\.001"),
    (("fine_tune", "fit"), {"lr": float("nan")}, r"lr must be a number > 0.*lr=nan"),
    (("fine_tune", "fit"), {"lr": "1e-3"}, r"lr must be a number > 0.*lr='1e-3'"),
    (("fine_tune", "fit"), {"lr": None}, r"lr must be a number > 0.*lr=None"),
    (("fine_tune",), {"fine_tune_lr": 0.0}, r"fine_tune_lr must be a number > 0 or None"),
    (("fine_tune",), {"lr_mult": 0.5}, r"lr_mult must be a number >= 1.*lr_mult=0\.5"),
    (("fine_tune",), {"unfreeze": "gradul"}, r"unfreeze=.*gradul.*Did you mean 'gradual'\?"),
    (("fine_tune",), {"unfreeze": 0}, r"unfreeze must be 'all', 'gradual' or a positive int"),
    (("fine_tune",), {"train_bn": "yes"}, r"train_bn must be True, False or None"),
    (("fine_tune",), {"fine_tune_optimizer": "sgdd"},
     r"fine_tune_optimizer must be one of.*'sgdd'.*Did you mean 'sgd'"),
    (("fine_tune", "fit"), {"schedule": "one_cycel"},
     r"schedule must be one of.*'one_cycel'.*Did you mean 'one_cycle'\?"),
    (("fine_tune", "fit"), {"schedule": 3}, r"schedule must be one of.*schedule=3"),
    (("fit_one_cycle",), {"pct_start": 0}, r"pct_start must be in \(0, 1\)\. Received: pct_start=0"),
    (("fit_one_cycle",), {"pct_start": 1.0}, r"pct_start=1\.0"),
    (("fit_one_cycle",), {"find_lr_steps": 1}, r"find_lr_steps must be an int >= 2"),
    # The shared options, for all three.
    (tuple(RECIPES), {"optimizer": "adamww"},
     r"optimizer must be one of.*Received: optimizer='adamww'.*Did you mean 'adamw'"),
    (tuple(RECIPES), {"optimizer": None}, r"optimizer must be one of.*optimizer=None"),
    (tuple(RECIPES), {"weight_decay": -1e-4}, r"weight_decay must be a number >= 0.*-0\.0001"),
    (tuple(RECIPES), {"early_stopping": -1}, r"early_stopping must be an int >= 0 or None"),
    (tuple(RECIPES), {"early_stopping": 1.5}, r"early_stopping=1\.5"),
    (tuple(RECIPES), {"monitor": ""}, r"monitor must be a metric name.*monitor=''"),
    (tuple(RECIPES), {"loss": "cross_entropyy"}, r"loss must be a Keras loss.*'cross_entropyy'"),
    (tuple(RECIPES), {"loss": 3}, r"loss must be a Keras loss.*loss=3"),
    (tuple(RECIPES), {"metrics": "accuracy"}, r"metrics must be a list.*metrics='accuracy'"),
    (tuple(RECIPES), {"callbacks": [object()]}, r"callbacks must be a list of keras\.callbacks"),
    (tuple(RECIPES), {"steps_per_epoch": 0}, r"steps_per_epoch must be an int >= 1 or None"),
    (tuple(RECIPES), {"verbose": 3}, r"verbose must be one of.*verbose=3"),
    (tuple(RECIPES), {"label_smoothing": 1.0},
     r"label_smoothing must be in \[0, 1\)\. Received: label_smoothing=1\.0"),
    (tuple(RECIPES), {"label_smoothing": -0.1}, r"label_smoothing=-0\.1"),
    (tuple(RECIPES), {"backup_dir": 3}, r"backup_dir must be a folder path or None"),
    (tuple(RECIPES), {"clipnorm": -1.0}, r"clipnorm must be a positive float.*clipnorm=-1\.0"),
    (tuple(RECIPES), {"clipnorm": 1.0, "clipvalue": 5.0}, r"at most one of clipnorm"),
]


@pytest.mark.parametrize("recipe,kwargs,message",
                         [(r, k, m) for recipes, k, m in BAD for r in recipes],
                         ids=lambda v: v if isinstance(v, str) and len(v) < 20 else None)
def test_a_bad_value_fails_before_the_data_is_read_or_the_model_compiled(model, recipe, kwargs,
                                                                          message):
    with pytest.raises(ValueError, match=message):
        RECIPES[recipe](model, _Untouchable(), **kwargs)
    assert not model.compiled


def test_an_unknown_keyword_names_the_closest_options(model):
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'label_smothing'.*"
                                        r"Did you mean 'label_smoothing'"):
        kr.fine_tune(model, _Untouchable(), label_smothing=0.1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'max_epochs'"):
        kr.fit(model, _Untouchable(), max_epochs=3)
    # The shared options are keyword-only: a positional call of the old order fails loudly
    # instead of landing in another argument.
    with pytest.raises(TypeError):
        kr.fit(model, _Untouchable(), None, 10, 1e-3, "sgd")


def test_the_renamed_lr_keywords_still_work_with_a_deprecation_warning(model):
    with pytest.warns(DeprecationWarning, match=r"fit_one_cycle\(max_lr=\.\.\.\) is deprecated: "
                                                r"use lr=\.\.\."):
        with pytest.raises(ValueError, match=r"lr=-1\.0 \(given as max_lr=.*deprecated name"):
            kr.fit_one_cycle(model, _Untouchable(), max_lr=-1.0)
    with pytest.raises(TypeError, match="got both max_lr= .*and lr="):
        kr.fit_one_cycle(model, _Untouchable(), max_lr=1e-3, lr=1e-3)
    with pytest.warns(DeprecationWarning, match=r"make_schedule\(learning_rate=\.\.\.\)"):
        schedule = kr.schedules.make_schedule("one_cycle", learning_rate=0.1, total_steps=10)
    assert schedule.max_lr == 0.1
    with pytest.warns(DeprecationWarning, match=r"StepDecay\(initial_lr=\.\.\.\) is deprecated"):
        step = kr.StepDecay(initial_lr=0.1, boundaries=[5])
    assert step.max_lr == step.initial_lr == 0.1
    with pytest.warns(DeprecationWarning, match=r"step_decay_lr\(initial_lr=\.\.\.\)"):
        assert float(kr.schedules.step_decay_lr(6, initial_lr=0.1, boundaries=[5])) == \
            pytest.approx(0.01)
    assert step.get_config() == {"max_lr": 0.1, "boundaries": [5], "gamma": 0.1}
    # A config saved under the old name (a .keras file of an earlier version) loads quietly.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        old = kr.StepDecay.from_config({"initial_lr": 0.1, "boundaries": [5], "gamma": 0.5})
    assert float(old(6)) == pytest.approx(0.05)


def test_training_options_check_on_construction_and_give_the_clipping():
    assert TrainingOptions().clipping == {}
    assert TrainingOptions(clipvalue=5).clipping == {"clipvalue": 5.0}
    assert TrainingOptions(optimizer="SGD", verbose="auto").optimizer == "SGD"
    assert TrainingOptions(verbose=False).verbose is False  # as 0, like Keras
    with pytest.raises(ValueError, match="Did you mean 'nesterov'"):
        TrainingOptions(optimizer="nesterof")


def test_augment_and_optimizer_names_suggest_the_closest(model):
    with pytest.raises(ValueError, match=r"preset must be one of.*'standrad'.*Did you mean "
                                         r"'standard'"):
        kr.augmentation("standrad")
    with pytest.raises(ValueError, match=r"optimizer='rmsprob'.*Did you mean 'rmsprop'"):
        kr.get_optimizer("rmsprob", 1e-3)
    with pytest.raises(ValueError, match=r"stage must be one of \('head', 'all'\).*'heads'.*"
                                         r"Did you mean 'head'"):
        kr.find_stage_lr(model, _Untouchable(), stage="heads")
