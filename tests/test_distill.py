import keras
import numpy as np
import pytest

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
    history = kr.distill([teacher, teacher], student, tiny_dataset(), tiny_dataset(seed=1),
                         temperature=2.0, alpha=1.0, epochs=2, lr=3e-2, verbose=0)
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
