"""Knowledge distillation: train a small student on a teacher's softened predictions.

`keras.distillation.Distiller` treats model outputs as logits; kerasrecipes classifiers output
probabilities, and a snapshot-ensemble teacher averages probabilities, so this module works with
log-probabilities (which are logits up to a constant: `softmax(log p / T)` is the tempered
distribution) in a small `keras.Model` whose `compute_loss` adds the distillation term — backend
independent, any optimizer, callbacks as usual.
"""

import keras
from keras import ops

from kerasrecipes.regularize import CrossEntropy


def distillation_loss(teacher_probs, student_probs, temperature):
    """`T² · KL(softmax(log p_t / T) ‖ softmax(log p_s / T))`, per example.

    Args:
        teacher_probs, student_probs: float tensors `[B, C]` of probabilities.
        temperature: float > 0.

    Reference: Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network" (2015).

    Example:
    >>> distillation_loss(np.array([[0.7, 0.3]]), np.array([[0.6, 0.4]]), 4.0)
    """
    eps = 1e-7
    t = ops.log_softmax(ops.log(ops.clip(teacher_probs, eps, 1.0)) / temperature, axis=-1)
    s = ops.log_softmax(ops.log(ops.clip(student_probs, eps, 1.0)) / temperature, axis=-1)
    return temperature**2 * ops.sum(ops.exp(t) * (t - s), axis=-1)


class Distiller(keras.Model):
    """Wraps a student; `fit` minimises `α·KD + (1 - α)·CE(labels)`; `predict` is the student's.

    Args:
        student: keras.Model to train (probability outputs).
        teacher: keras.Model or list of models (a snapshot ensemble: probabilities averaged).
            Always run in inference mode, never trained.
        temperature: float > 0. Defaults to `4.0`.
        alpha: float in [0, 1]. Weight of the distillation term. Defaults to `0.5`.
        label_smoothing: float. Of the hard-label cross-entropy. Defaults to `0.0`.

    Example:
    >>> distiller = Distiller(student, teacher, temperature=4.0, alpha=0.5)
    >>> distiller.compile(optimizer="adam", metrics=[kr.Accuracy()])
    >>> distiller.fit(data.train, epochs=2)
    """

    def __init__(self, student, teacher, temperature=4.0, alpha=0.5, label_smoothing=0.0,
                 name="distiller"):
        super().__init__(name=name)
        if not isinstance(temperature, (int, float)) or temperature <= 0:
            raise ValueError(f"temperature must be > 0. Received: temperature={temperature!r}")
        if not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1]. Received: alpha={alpha!r}")
        teachers = list(teacher) if isinstance(teacher, (list, tuple)) else [teacher]
        if not teachers or not all(isinstance(t, keras.Model) for t in teachers):
            raise ValueError(f"teacher must be a keras.Model or a list of them. Received: teacher={teacher!r}")
        for t in teachers:
            if t.output_shape[-1] != student.output_shape[-1]:
                raise ValueError(
                    f"teacher outputs {t.output_shape[-1]} classes but the student "
                    f"{student.output_shape[-1]}: they must predict the same classes."
                )
            t.trainable = False
        self.student = student
        self.teachers = teachers
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.hard_loss = CrossEntropy(label_smoothing=label_smoothing)

    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    def teacher_probs(self, inputs):
        total = None
        for teacher in self.teachers:
            p = ops.cast(teacher(inputs, training=False), "float32")
            total = p if total is None else total + p
        return ops.stop_gradient(total / len(self.teachers))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        y_pred = ops.cast(y_pred, "float32")
        loss = (1.0 - self.alpha) * self.hard_loss(y, y_pred) if self.alpha < 1 else 0.0
        if self.alpha > 0:
            kd = distillation_loss(self.teacher_probs(x), y_pred, self.temperature)
            loss = loss + self.alpha * ops.mean(kd)
        if self.losses:
            loss = loss + ops.sum(self.losses)
        return loss


def distill(teacher, student, train, validation=None, temperature=4.0, alpha=0.5, epochs=5,
            lr=1e-3, optimizer="adamw", weight_decay=None, schedule="warmup_cosine",
            callbacks=None, verbose=1):
    """Trains `student` (in place) by knowledge distillation from `teacher`.

    Every student layer trains (freeze parts yourself before calling if you want). The teacher
    sees the same (augmented) batches as the student.

    Args:
        teacher: keras.Model or list of models (snapshot ensemble), probability outputs.
        student: keras.Model, probability outputs over the same classes.
        train: dataset of `(images, int or soft labels)` batches.
        validation: optional dataset. Defaults to `None`.
        temperature: float > 0. Defaults to `4.0`.
        alpha: float in [0, 1]. Weight of the distillation term (1 = teacher only).
            Defaults to `0.5`.
        epochs: int. Defaults to `5`.
        lr: float. Peak learning rate. Defaults to `1e-3`.
        optimizer: str. As in `kr.get_optimizer`. Defaults to `"adamw"`.
        weight_decay: optional float. Defaults to the optimizer's.
        schedule: as in `kr.fit`. Defaults to `"warmup_cosine"`.
        callbacks: optional list of Keras callbacks. Defaults to `None`.
        verbose: int. Defaults to `1`.

    Returns:
        The Keras `History` (`loss`, `accuracy`, `val_loss`, `val_accuracy`; `val_loss` is the
        distillation objective on the validation data).

    Reference: Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network" (2015).

    Example:
    >>> history = distill(teacher, student, data.train, data.validation, epochs=3)
    """
    from kerasrecipes.optimizers import get_optimizer
    from kerasrecipes.regularize import Accuracy
    from kerasrecipes.train import _steps_per_epoch, make_schedule

    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1. Received: epochs={epochs!r}")
    train, steps = _steps_per_epoch(train, None)
    distiller = Distiller(student, teacher, temperature=temperature, alpha=alpha)
    distiller.compile(
        optimizer=get_optimizer(optimizer, make_schedule(schedule, lr, epochs * steps),
                                weight_decay=weight_decay),
        metrics=[Accuracy(name="accuracy")],
    )
    return distiller.fit(train, validation_data=validation, epochs=epochs,
                         callbacks=callbacks, verbose=verbose)
