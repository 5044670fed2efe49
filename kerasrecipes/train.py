"""Training recipes: staged fine-tuning with discriminative learning rates, `fit` and one-cycle.

`fine_tune` follows the transfer-learning recipe: freeze the backbone and train the new head,
then unfreeze (all groups, the top N, or gradually one group per epoch) and fine-tune at a lower
learning rate, earlier layer groups getting geometrically smaller rates, with early stopping that
restores the best weights. Every freeze/unfreeze recompiles, as Keras requires. `fit` trains
every layer in one stage (models from scratch); `fit_one_cycle` runs one one-cycle stage, after a
learning-rate range test when no `lr` is given.

The three share their options (`kerasrecipes.options.TrainingOptions`, checked before any data
is read) and their stage runner (`kerasrecipes.stages`); freezing and layer groups live in
`kerasrecipes.freezing`, the history in `kerasrecipes.history`, the fault-tolerant backup in
`kerasrecipes.backup`, the schedules in `kerasrecipes.schedules`.

Reference: Howard & Ruder, "Universal Language Model Fine-tuning for Text Classification" (2018);
Yosinski et al., "How transferable are features in deep neural networks?" (2014).
"""

from kerasrecipes.batches import as_batches, epoch_steps
# Also re-exported (the kerasrecipes.train.X paths of earlier versions): group_lr_multipliers,
# discriminative_multipliers, set_trainable_groups, TrainingHistory, plot_history, make_schedule,
# SCHEDULES.
from kerasrecipes.freezing import (  # noqa: F401
    check_unfreeze,
    discriminative_multipliers,
    group_lr_multipliers,
    infer_layer_groups,
    set_trainable_groups,
    trainable_batch_norm,
    unfreeze_schedule,
)
from kerasrecipes.head_features import cache_refusal, head_stage_data
from kerasrecipes.history import TrainingHistory, plot_history  # noqa: F401
from kerasrecipes.lr_finder import find_lr
from kerasrecipes.optimizers import check_optimizer_name, get_optimizer
from kerasrecipes.options import (
    TrainingOptions,
    check_epochs,
    check_lr,
    check_train_bn,
    training_recipe,
)
from kerasrecipes.schedules import SCHEDULES, OneCycle, check_schedule, make_schedule  # noqa: F401
from kerasrecipes.stages import StageRunner, submodel
from kerasrecipes.tasks import default_loss, task_of
from kerasrecipes.validate import check_choice, check_int, check_number, renamed_arguments

STAGES = ("head", "all")


@training_recipe(early_stopping=3)
def fine_tune(model, train, validation=None, head_epochs=4, epochs=6, lr=1e-3, fine_tune_lr=None,
              lr_mult=10.0, unfreeze="all", train_bn=None, *, fine_tune_optimizer=None,
              schedule="one_cycle", cache_features="auto", options):
    """Staged transfer learning: train the head on a frozen backbone, then fine-tune.

    Args:
        model: a model from `kr.build_classifier` (any model with `backbone` and `head` sub-models).
        train: `tf.data.Dataset` or `keras.utils.PyDataset` of `(uint8 images, labels)` batches.
        validation: optional dataset like `train`. Defaults to `None`.
        head_epochs: int >= 0. Epochs with the backbone frozen. Defaults to `4`.
        epochs: int >= 0. Epochs after unfreezing. Defaults to `6`.
        lr: float > 0. Peak learning rate of the head stage. Defaults to `1e-3`.
        fine_tune_lr: optional float > 0. Peak learning rate of the head after unfreezing; the
            layer groups get it scaled down by `lr_mult` (see below). Defaults to `lr`.
        lr_mult: float >= 1. Ratio between the learning rates of the head and of the first
            (`stem`) group; the groups in between are spaced geometrically. `1` disables
            discriminative learning rates. Defaults to `10`.
        unfreeze: `"all"`, an int N (the top N layer groups) or `"gradual"` (one more group per
            epoch, from the top, then the rest of the epochs with all groups). Defaults to `"all"`.
        train_bn: optional bool. Whether the backbone's BatchNorm layers train after unfreezing
            (updating their moving statistics). `None` keeps what the model was built with:
            `build_classifier` freezes them for pretrained weights (inference mode, as the Keras
            transfer-learning guide advises). Defaults to `None`.
        fine_tune_optimizer: optional str. Optimizer after unfreezing. Defaults to `optimizer`.
        schedule: the LR schedule of each stage, see `make_schedule`. The default, one cycle
            per stage (fastai's `fine_tune`), also cycles the momentum (SGD, RMSprop) or `beta_1`
            (Adam, AdamW) 0.95 → 0.85 → 0.95 inside the optimizer step; with `unfreeze="gradual"`
            the fine-tuning stage runs one cycle across its recompiles. `"warmup_cosine"` is the
            linear warmup + cosine decay of earlier versions. Defaults to `"one_cycle"`.
        cache_features: `"auto"`, `True` or `False`. Whether the head stage trains on the frozen
            backbone's pooled features, computed once (`kerasrecipes.head_features`), instead
            of running the backbone (and the `augment` sub-model) over every image every epoch.
            Same model, same export; the head sees the un-augmented images. `"auto"` caches
            unless `kerasrecipes.head_features.cache_refusal` gives a reason not to (soft
            labels, extra callbacks, several devices, a head without global pooling, features
            that do not fit in memory) and says it; `True` raises for those reasons except
            callbacks, which then see the head model in that stage. Defaults to `"auto"`.
        {training_options}

    Returns:
        `TrainingHistory` of both stages.

    Example:
    >>> model = kr.build_classifier("efficientnet_lite0", num_classes=10)
    >>> history = kr.fine_tune(model, data.train, data.validation, head_epochs=2, epochs=6)
    """
    check_epochs("head_epochs", head_epochs, low=0)
    check_epochs("epochs", epochs, low=0)
    if head_epochs + epochs == 0:
        raise ValueError("head_epochs and epochs are both 0: there is nothing to train.")
    check_lr("lr", lr)
    check_lr("fine_tune_lr", fine_tune_lr, allow_none=True)
    check_number("lr_mult", lr_mult, low=1)
    check_unfreeze(unfreeze)
    check_train_bn(train_bn)
    if fine_tune_optimizer is not None:
        check_optimizer_name(fine_tune_optimizer, "fine_tune_optimizer")
    check_schedule(schedule)
    if not (cache_features == "auto" or isinstance(cache_features, bool)):
        raise ValueError("cache_features must be 'auto', True or False. "
                         f"Received: cache_features={cache_features!r}")
    backbone = submodel(model, "backbone")
    groups = infer_layer_groups(backbone)
    if train_bn is None:
        train_bn = trainable_batch_norm(backbone)
    steps_of_groups = unfreeze_schedule(groups, unfreeze)
    fine_tune_lr = lr if fine_tune_lr is None else fine_tune_lr
    train, steps = epoch_steps(train, options.steps_per_epoch)
    runner = StageRunner(options, schedule)
    runner.prepare(model, train, validation, steps)

    if head_epochs:
        set_trainable_groups(model, groups, [])
        stage = (model, train, validation)
        if cache_features and not runner.stage_done():  # (a finished stage is only restored)
            # Forced caching accepts callbacks (they see the head on features in this stage).
            refusal = cache_refusal(model, train,
                                    options.callbacks if cache_features == "auto" else None)
            if refusal and cache_features is True:
                raise ValueError(f"cache_features=True, but {refusal}.")
            if refusal and options.verbose:
                print(f"[kerasrecipes] head stage on images, not cached features: {refusal}")
            if not refusal:
                stage = head_stage_data(model, train, validation, verbose=options.verbose)
        runner.run(*stage, steps, "head", head_epochs, options.optimizer, lr, backup_model=model)
        if stage[0] is not model and stage[0].compiled:
            # Left compiled as after a live head stage (loss, metrics, optimizer settings).
            model.compile_from_config(stage[0].get_compile_config())

    if epochs and not runner.diverged:
        multipliers = discriminative_multipliers(groups, lr_mult)
        stage_optimizer = fine_tune_optimizer or options.optimizer
        offset = 0
        for k, trainable in enumerate(steps_of_groups[:epochs]):
            last = k == min(len(steps_of_groups), epochs) - 1
            stage_epochs = epochs - k if last else 1
            set_trainable_groups(model, groups, trainable, train_bn)
            runner.run(
                model, train, validation, steps, "fine_tune", stage_epochs, stage_optimizer,
                fine_tune_lr, multipliers, trainable, schedule_steps=epochs * steps,
                step_offset=offset, early_stopping=options.early_stopping if last else None,
            )
            offset += stage_epochs * steps
            if runner.diverged:
                break
    return runner.finish()


@training_recipe()
def fit(model, train, validation=None, epochs=10, lr=1e-3, *, schedule="warmup_cosine", options):
    """Trains every layer in one stage (models from scratch).

    The default schedule is `"warmup_cosine"`; `schedule="one_cycle"` (or `kr.fit_one_cycle`)
    also cycles the momentum. Computes the per-channel normalisation of scratch models on
    `train` first if needed.

    Args:
        model: keras.Model taking the batches of `train` (e.g. from `kr.build_scratch_cnn`).
        train: dataset of `(uint8 images, labels)` batches.
        validation: optional dataset like `train`. Defaults to `None`.
        epochs: int >= 1. Defaults to `10`.
        lr: float > 0. Peak learning rate. Defaults to `1e-3`.
        schedule: the LR schedule, see `make_schedule`. Defaults to `"warmup_cosine"`.
        {training_options}

    Returns:
        `TrainingHistory` with one stage.

    Example:
    >>> model = kr.build_scratch_cnn(10, image_size=32)
    >>> history = kr.fit(model, data.train, data.validation, epochs=10, lr=3e-3)
    """
    check_epochs("epochs", epochs)
    check_lr("lr", lr)
    check_schedule(schedule)
    train, steps = epoch_steps(train, options.steps_per_epoch)
    runner = StageRunner(options, schedule)
    runner.prepare(model, train, validation, steps)
    runner.run(model, train, validation, steps, "train", epochs, options.optimizer, lr,
               trainable_groups=["all"], early_stopping=options.early_stopping)
    return runner.finish()


@renamed_arguments(max_lr="lr")
@training_recipe()
def fit_one_cycle(model, train, validation=None, epochs=5, lr=None, *, pct_start=0.25,
                  find_lr_steps=100, options):
    """Trains the model's trainable layers with the one-cycle policy and cyclical momentum.

    The learning rate warms up from `lr / 25` to `lr` over `pct_start` of the steps and
    anneals to `lr / 25 / 1e4` (cosine); momentum (SGD) or `beta_1` (Adam, AdamW) runs
    0.95 → 0.85 → 0.95 in mirror. What is frozen stays frozen, so it serves for a head-only stage
    as well as for a whole model.

    Args:
        model: keras.Model taking the batches of `train` (e.g. from `kr.build_classifier`).
        train: dataset of `(images, labels)` batches.
        validation: optional dataset like `train`. Defaults to `None`.
        epochs: int >= 1. Defaults to `5`.
        lr: optional float > 0. Peak learning rate; `None` runs `kr.find_lr` first (with the
            same optimizer settings, restoring the model) and uses its valley suggestion.
            (Called `max_lr` before; that keyword still works, with a `DeprecationWarning`.)
            Defaults to `None`.
        pct_start: float in (0, 1). Fraction of warmup. Defaults to `0.25`.
        find_lr_steps: int >= 2. Steps of the range test when `lr` is None. Defaults to `100`.
        {training_options}

    Returns:
        `TrainingHistory` with one stage; `history.stages[0]["learning_rate"]` is the `lr`
        used.

    Example:
    >>> model = kr.build_resnet(10, "resnet9", image_size=32, normalization_data=x_train)
    >>> history = kr.fit_one_cycle(model, data.train, data.validation, epochs=5)

    Reference: Smith, "A disciplined approach to neural network hyper-parameters: Part 1"
    (2018); Smith & Topin, "Super-Convergence" (2017).
    """
    check_epochs("epochs", epochs)
    check_lr("lr", lr, allow_none=True)
    check_number("pct_start", pct_start, 0, 1, low_open=True, high_open=True)
    check_int("find_lr_steps", find_lr_steps, low=2)
    train, steps = epoch_steps(train, options.steps_per_epoch)
    runner = StageRunner(options, lambda peak, total: OneCycle(peak, total, pct_start=pct_start))
    runner.prepare(model, train, validation, steps)
    if lr is None:
        result = _range_test(model, train, options, num_steps=find_lr_steps)
        lr = result.suggestion("valley")
        if lr is None:
            raise ValueError(
                "find_lr gave no valley suggestion (the loss curve was too short or flat): pass "
                "lr explicitly."
            )
        if options.verbose:
            print(f"[kerasrecipes] fit_one_cycle: lr {lr:.2e} (find_lr valley)")
    runner.run(model, train, validation, steps, "one_cycle", epochs, options.optimizer,
               float(lr), trainable_groups=["all"], early_stopping=options.early_stopping)
    return runner.finish()


def find_stage_lr(model, train, stage="head", lr_mult=10.0, train_bn=None, optimizer="adamw",
                  weight_decay=None, loss=None, min_lr=1e-7, max_lr=10.0, num_steps=100,
                  clipnorm=None, clipvalue=None, global_clipnorm=None, verbose=1, batch_size=None):
    """The learning-rate range test of one `fine_tune` stage, set up as `fine_tune` sets it up.

    `stage="head"` freezes the backbone (the head stage); `"all"` unfreezes every layer group
    with the discriminative per-group multipliers of `lr_mult` (the fine-tuning stage with
    `unfreeze="all"`). Then `kr.find_lr` ramps the learning rate from `min_lr` to `max_lr`; the
    model's weights are restored, what is frozen stays as the stage has it. `kerasrecipes
    lr-find` runs this.

    Args:
        model: a model from `kr.build_classifier`.
        train: dataset of `(uint8 images, labels)` batches, or `(x, y)` arrays with
            `batch_size` (as `keras.Model.fit` takes them).
        stage: `"head"` or `"all"`. Defaults to `"head"`.
        lr_mult: float >= 1. As in `fine_tune` (for `stage="all"`). Defaults to `10`.
        train_bn: optional bool. As in `fine_tune` (for `stage="all"`). Defaults to `None`.
        optimizer, weight_decay, loss, clipnorm, clipvalue, global_clipnorm, verbose: as in
            `fine_tune`.
        min_lr: float > 0. First learning rate of the ramp. Defaults to `1e-7`.
        max_lr: float > `min_lr`. Last learning rate of the ramp. Defaults to `10`.
        num_steps: int >= 2. Steps of the ramp. Defaults to `100`.
        batch_size: optional int. Batch size when `train` is arrays. Defaults to `None` (32).

    Returns:
        `LRFinderResult` (`.suggestion()`, `.plot(path)`).

    Example:
    >>> result = kr.find_stage_lr(model, data.train, stage="all", lr_mult=10)
    >>> result.suggestion("valley")
    """
    options = TrainingOptions(optimizer=optimizer, weight_decay=weight_decay, loss=loss,
                              clipnorm=clipnorm, clipvalue=clipvalue,
                              global_clipnorm=global_clipnorm, verbose=verbose,
                              batch_size=batch_size)
    train = as_batches(train, batch_size, "train", shuffle=True)
    check_choice("stage", stage, STAGES)
    check_number("lr_mult", lr_mult, low=1)
    check_train_bn(train_bn)
    check_lr("min_lr", min_lr)
    check_lr("max_lr", max_lr)
    check_int("num_steps", num_steps, low=2)
    backbone = submodel(model, "backbone")
    groups = infer_layer_groups(backbone)
    multipliers = None
    if stage == "head":
        set_trainable_groups(model, groups, [])
    else:
        if train_bn is None:
            train_bn = trainable_batch_norm(backbone)
        set_trainable_groups(model, groups, list(groups), train_bn)
        multipliers = discriminative_multipliers(groups, lr_mult)
    return _range_test(model, train, options, multipliers, min_lr, max_lr, num_steps)


def _range_test(model, train, options, multipliers=None, min_lr=1e-7, max_lr=10.0,
                num_steps=100):
    """`kr.find_lr` on `model` compiled with the optimizer settings of `options`."""
    lr_multipliers = group_lr_multipliers(model, multipliers) if multipliers else None
    model.compile(
        optimizer=get_optimizer(options.optimizer, min_lr, lr_multipliers=lr_multipliers,
                                weight_decay=options.weight_decay, **options.clipping),
        loss=options.loss or default_loss(task_of(model)),
    )
    return find_lr(model, train, min_lr=min_lr, max_lr=max_lr, num_steps=num_steps,
                   verbose=options.verbose)
