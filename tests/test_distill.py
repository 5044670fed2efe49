import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasrecipes as kr
from kerasrecipes.distill import Distiller, distillation_loss
from tiny_models import TINY, tiny_dataset


def _np(x):
    return keras.ops.convert_to_numpy(x)


def test_distillation_loss_is_tempered_kl_times_t_squared():
    p = np.array([[0.7, 0.2, 0.1]], "float32")
    q = np.array([[0.5, 0.3, 0.2]], "float32")
    t = 2.0
    pt = p ** (1 / t) / (p ** (1 / t)).sum()
    qt = q ** (1 / t) / (q ** (1 / t)).sum()
    expected = t**2 * (pt * np.log(pt / qt)).sum()
    assert float(_np(distillation_loss(p, q, t))[0]) == pytest.approx(expected, rel=1e-5)
    assert float(_np(distillation_loss(p, p, t))[0]) == pytest.approx(0.0, abs=1e-6)


def test_distill_moves_the_student_towards_the_teacher_and_leaves_the_teacher_alone():
    keras.utils.set_random_seed(0)
    teacher = kr.build_classifier(TINY, num_classes=3, weights=None, dropout=0.0)
    kr.fit(teacher, tiny_dataset(), epochs=2, lr=3e-2, verbose=0)
    teacher_weights = [_np(w).copy() for w in teacher.weights]
    student = kr.build_classifier(TINY, num_classes=3, weights=None, dropout=0.0, name="student")
    x = np.concatenate([b[0] for b in tiny_dataset()])
    p_teacher = teacher.predict(x, verbose=0)
    before = float(_np(distillation_loss(p_teacher, student.predict(x, verbose=0), 1.0)).mean())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = kr.distill([teacher, teacher], student, tiny_dataset(), tiny_dataset(seed=1),
                             temperature=2.0, alpha=1.0, epochs=2, lr=3e-2, verbose=0)
    # tf.data shuffles itself: fit must not be asked to (Keras warns that it ignores it).
    assert not [w for w in caught if "shuffle" in str(w.message)]
    after = float(_np(distillation_loss(p_teacher, student.predict(x, verbose=0), 1.0)).mean())
    assert after < before
    assert all(np.array_equal(a, _np(b)) for a, b in zip(teacher_weights, teacher.weights))
    assert {"loss", "accuracy", "val_accuracy"} <= set(history.history)


def test_bad_arguments():
    a = kr.build_classifier(TINY, num_classes=3, weights=None)
    b = kr.build_classifier(TINY, num_classes=4, weights=None)
    with pytest.raises(ValueError, match="must predict the same classes"):
        Distiller(a, b)
    with pytest.raises(ValueError, match="alpha must be in"):
        Distiller(a, a, alpha=2.0)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        Distiller(a, a, temperature=0)


def _with_teacher(images, labels, probs, batch_size=8):
    return tf.data.Dataset.from_tensor_slices((images, (labels, probs))).batch(batch_size)


def test_cached_teacher_predictions_give_the_same_loss_as_running_the_teacher():
    keras.utils.set_random_seed(0)
    teacher = kr.build_classifier(TINY, num_classes=3, weights=None, dropout=0.0)
    student = kr.build_classifier(TINY, num_classes=3, weights=None, name="student")
    x, y = next(iter(tiny_dataset()))
    probs = teacher.predict(x, verbose=0)
    y_pred = student(x, training=False)
    live = Distiller(student, teacher, temperature=3.0, alpha=0.7)
    cached = Distiller(student, None, temperature=3.0, alpha=0.7)
    expected = _np(live.compute_loss(x, y, y_pred))
    np.testing.assert_allclose(_np(cached.compute_loss(x, (y, probs), y_pred)), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="every batch must carry the teacher's probabilities"):
        cached.compute_loss(x, y, y_pred)


def test_distill_from_cached_predictions_at_another_resolution():
    """The teacher saw 16 px images; the scratch student trains on 8 px ones (normalised first)."""
    keras.utils.set_random_seed(0)
    teacher = kr.build_classifier(TINY, num_classes=3, weights=None, dropout=0.0)
    kr.fit(teacher, tiny_dataset(), epochs=2, lr=3e-2, verbose=0)
    x16, y = (np.concatenate(parts) for parts in zip(*tiny_dataset().as_numpy_iterator()))
    probs = teacher.predict(x16, verbose=0)
    x8 = x16[:, ::2, ::2]
    student = kr.build_scratch_cnn(3, image_size=8, filters=4, stages=1, dense_units=(),
                                   dropout=0.0)
    train = _with_teacher(x8, y, probs)
    with pytest.raises(ValueError, match="teacher=None needs the teacher's probabilities in "
                                         "the validation batches"):
        kr.distill(None, student, train, tiny_dataset(size=8), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="carry teacher probabilities over 2 classes but the "
                                         "student predicts 3"):
        kr.distill(None, student, _with_teacher(x8, y, probs[:, :2]), epochs=1, verbose=0)
    # Not adapted yet: distill computes the per-channel statistics on the training images.
    assert not student.get_layer("preprocess").get_layer("normalize").adapted
    student_weights = [_np(w).copy() for w in student.weights]
    history = kr.distill(None, student, train, train, temperature=2.0, alpha=1.0, epochs=3,
                         lr=3e-2, verbose=0)
    assert student.get_layer("preprocess").get_layer("normalize").adapted
    assert not all(np.array_equal(a, _np(b)) for a, b in zip(student_weights, student.weights))
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history.history)
    # Accuracy is measured against the labels, not the teacher: it equals a plain evaluation.
    student.compile(metrics=[kr.Accuracy(name="accuracy")], loss=kr.CrossEntropy())
    plain = student.evaluate(tf.data.Dataset.from_tensor_slices((x8, y)).batch(8), verbose=0,
                             return_dict=True)
    assert history.history["val_accuracy"][-1] == pytest.approx(plain["accuracy"], abs=1e-6)
