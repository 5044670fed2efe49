"""Learning-rate schedules and momentum cycling: one-cycle, cyclical, warmup-cosine, SGDR, steps.

The maths lives in pure functions of the step (`functions.py`: `one_cycle_lr`,
`one_cycle_momentum`, `cyclical_lr`, `warmup_cosine_lr`, `sgdr_lr`, `step_decay_lr`,
`linear_warmup`), written with `keras.ops` so they run on Python numbers, NumPy arrays and backend
tensors alike. The classes, one per module, are thin, serializable
`keras.optimizers.schedules.LearningRateSchedule`s over them: an optimizer that uses one saves
with a `.keras` model and continues at its `iterations` after reloading. `make_schedule`
(`factory.py`) turns the recipes' `schedule="one_cycle"` names into them.

Momentum cycling: `OneCycleMomentum` is the momentum (or Adam's `beta_1`) as a schedule of the
step, for the `momentum_schedule` argument of the kerasrecipes optimizers (`kr.get_optimizer`),
which evaluate it at `optimizer.iterations` inside the compiled update step, on every backend.
`CycleMomentum` (`momentum.py`) is a callback for a plain `fit`: on a kerasrecipes optimizer it
installs that schedule for the duration of the fit; on a stock Keras optimizer (TensorFlow
backend only) it swaps a variable in for the `momentum` / `beta_1` float and assigns it before
every batch.

Every peak learning rate is called `max_lr` here (`base_lr` and `min_lr` are the low ends).

Reference: Smith, "Cyclical Learning Rates for Training Neural Networks" (2015);
Smith, "A disciplined approach to neural network hyper-parameters: Part 1" (2018);
Smith & Topin, "Super-Convergence" (2017); Loshchilov & Hutter, "SGDR: Stochastic Gradient
Descent with Warm Restarts" (2016); Goyal et al., "Accurate, Large Minibatch SGD" (2017, warmup).
"""

from kerasrecipes.schedules.cyclical import CyclicalLR
from kerasrecipes.schedules.factory import SCHEDULES, check_schedule, make_schedule
from kerasrecipes.schedules.functions import (
    ANNEAL,
    CYCLICAL_MODES,
    check_phases,
    cyclical_lr,
    linear_warmup,
    one_cycle_lr,
    one_cycle_momentum,
    sgdr_lr,
    step_decay_lr,
    warmup_cosine_lr,
)
from kerasrecipes.schedules.linear_warmup import LinearWarmup
from kerasrecipes.schedules.momentum import CycleMomentum, momentum_attribute
from kerasrecipes.schedules.one_cycle import OneCycle, OneCycleMomentum, check_momentum_range
from kerasrecipes.schedules.sgdr import SGDR
from kerasrecipes.schedules.step_decay import StepDecay
from kerasrecipes.schedules.warmup_cosine import WarmupCosine

__all__ = [
    "ANNEAL",
    "CYCLICAL_MODES",
    "SCHEDULES",
    "SGDR",
    "CycleMomentum",
    "CyclicalLR",
    "LinearWarmup",
    "OneCycle",
    "OneCycleMomentum",
    "StepDecay",
    "WarmupCosine",
    "check_momentum_range",
    "check_phases",
    "check_schedule",
    "cyclical_lr",
    "linear_warmup",
    "make_schedule",
    "momentum_attribute",
    "one_cycle_lr",
    "one_cycle_momentum",
    "sgdr_lr",
    "step_decay_lr",
    "warmup_cosine_lr",
]
