"""Knowledge distillation: train a small student on a teacher's softened predictions.

`keras.distillation.Distiller` treats model outputs as logits; kerasrecipes classifiers output
probabilities, and a snapshot-ensemble teacher averages probabilities, so this module works with
log-probabilities (which are logits up to a constant: `softmax(log p / T)` is the tempered
distribution) in a small `keras.Model` whose `compute_loss` adds the distillation term — backend
independent, any optimizer, callbacks as usual.

The teacher either runs on every batch (it sees the student's augmented images) or its
predictions are computed once and carried in the batches as `(images, (labels, teacher_probs))`
with `teacher=None`: much cheaper for a large teacher, and the teacher may then see the images at
another resolution than the student. Cached predictions are of un-augmented images, so with strong
augmentation of the student they match its inputs less well.
"""

import keras
from keras import ops

from kerasrecipes.batches import as_batches, epoch_steps, first_batch
from kerasrecipes.layers import adapt_normalization
from kerasrecipes.optimizers import get_optimizer
from kerasrecipes.regularize import Accuracy, CrossEntropy
from kerasrecipes.schedules import make_schedule


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
        teacher: keras.Model, list of models (a snapshot ensemble: probabilities averaged), or
            `None` when every batch carries the teacher's probabilities as
            `(images, (labels, teacher_probs))` (batches that carry them use them in any case).
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
        if teacher is None:
            teachers = []
        else:
            teachers = list(teacher) if isinstance(teacher, (list, tuple)) else [teacher]
            if not teachers or not all(isinstance(t, keras.Model) for t in teachers):
                raise ValueError(
                    "teacher must be a keras.Model, a list of them, or None (teacher "
                    f"probabilities carried in the batches). Received: teacher={teacher!r}"
                )
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
        labels, cached = _split_targets(y)
        y_pred = ops.cast(y_pred, "float32")
        loss = (1.0 - self.alpha) * self.hard_loss(labels, y_pred) if self.alpha < 1 else 0.0
        if self.alpha > 0:
            if cached is not None:
                teacher = ops.cast(cached, "float32")
            elif self.teachers:
                teacher = self.teacher_probs(x)
            else:
                raise ValueError(
                    "Distiller has no teacher model (teacher=None), so every batch must carry "
                    "the teacher's probabilities as (images, (labels, teacher_probs))."
                )
            kd = distillation_loss(teacher, y_pred, self.temperature)
            loss = loss + self.alpha * ops.mean(kd)
        if self.losses:
            loss = loss + ops.sum(self.losses)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        # Metrics compare the student with the labels only, never with cached teacher outputs.
        return super().compute_metrics(x, _split_targets(y)[0], y_pred, sample_weight)


def _split_targets(y):
    """`(labels, cached teacher probabilities or None)` of a batch's targets."""
    if isinstance(y, (tuple, list)):
        if len(y) != 2:
            raise ValueError(
                "Batches with cached teacher predictions must be (images, (labels, "
                f"teacher_probs)). Received targets with {len(y)} parts."
            )
        return y[0], y[1]
    return y, None


def _carries_teacher(dataset):
    """Whether a dataset's batches are `(images, (labels, teacher_probs))`."""
    spec = getattr(dataset, "element_spec", None)
    if spec is None:
        spec = first_batch(dataset)
    return isinstance(spec, (tuple, list)) and len(spec) >= 2 and isinstance(spec[1], (tuple, list))


def distill(teacher, student, train, validation=None, temperature=4.0, alpha=0.5, epochs=5,
            lr=1e-3, optimizer="adamw", weight_decay=None, schedule="warmup_cosine",
            callbacks=None, verbose=1, batch_size=None):
    """Trains `student` (in place) by knowledge distillation from `teacher`.

    Every student layer trains (freeze parts yourself before calling if you want). A teacher
    model sees the same (augmented) batches as the student. To pay for the teacher only once,
    pass `teacher=None` and datasets whose batches carry its predictions (see the example); the
    teacher may then have seen the images at its own resolution. A scratch student's
    per-channel normalisation is computed on `train` first, as `kr.fit` does.

    Args:
        teacher: keras.Model or list of models (snapshot ensemble), probability outputs; or
            `None` when `train` and `validation` yield `(images, (labels, teacher_probs))`.
        student: keras.Model, probability outputs over the same classes.
        train: dataset of `(images, int or soft labels)` batches, or of
            `(images, (labels, teacher_probs))` batches with `teacher=None`; or `(x, y)` arrays
            (as `keras.Model.fit` takes them; see `batch_size`).
        validation: optional dataset like `train`. Defaults to `None`.
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
        batch_size: optional int. Batch size when `train` / `validation` are arrays. Defaults to
            `None` (32).

    Returns:
        The Keras `History` (`loss`, `accuracy`, `val_loss`, `val_accuracy`; `val_loss` is the
        distillation objective on the validation data).

    Reference: Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network" (2015).

    Example:
    >>> history = distill(teacher, student, data.train, data.validation, epochs=3)
    >>> # Teacher predictions computed once (here at 128 px), student trained at 64 px:
    >>> probs = teacher.predict(x_train_128)
    >>> train = tf.data.Dataset.from_tensor_slices((x_train_64, (y_train, probs)))
    >>> history = distill(None, student, train.shuffle(4096).batch(32), epochs=3)
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1. Received: epochs={epochs!r}")
    train = as_batches(train, batch_size, "train", shuffle=True)
    validation = as_batches(validation, batch_size, "validation", allow_none=True)
    for what, dataset in (("train", train), ("validation", validation)):
        if dataset is None:
            continue
        carries = _carries_teacher(dataset)
        if teacher is None and not carries:
            raise ValueError(
                f"teacher=None needs the teacher's probabilities in the {what} batches: "
                "(images, (labels, teacher_probs)). Pass the teacher model, or add its "
                "predictions to the dataset."
            )
        spec = getattr(dataset, "element_spec", None)
        if carries and spec is not None:
            classes = spec[1][1].shape[-1]
            if classes is not None and classes != student.output_shape[-1]:
                raise ValueError(
                    f"The {what} batches carry teacher probabilities over {classes} classes but "
                    f"the student predicts {student.output_shape[-1]}: they must match."
                )
    train, steps = epoch_steps(train, None)
    adapt_normalization(student, train)
    distiller = Distiller(student, teacher, temperature=temperature, alpha=alpha)
    distiller.compile(
        optimizer=get_optimizer(optimizer, make_schedule(schedule, lr, epochs * steps),
                                weight_decay=weight_decay),
        metrics=[Accuracy(name="accuracy")],
    )
    return distiller.fit(train, validation_data=validation, epochs=epochs,
                         shuffle=not hasattr(train, "cardinality"),  # tf.data shuffles itself
                         callbacks=callbacks, verbose=verbose)
