"""Tests for kerasrecipes.gradients on the active backend (CI runs it on TF, JAX and torch)."""

import keras
import numpy as np

from kerasrecipes.gradients import value_and_gradients


def test_value_and_gradients_match_the_formula_and_zero_where_unconnected():
    x = np.array([1.0, -2.0, 3.0], "float32")
    unused = np.ones((2,), "float32")

    def fn(values):
        a, _ = values
        return keras.ops.sum(a ** 2), {"double": 2 * a}

    value, aux, (grad_a, grad_unused) = value_and_gradients(fn, [x, unused])
    assert float(keras.ops.convert_to_numpy(value)) == 14.0
    np.testing.assert_allclose(keras.ops.convert_to_numpy(aux["double"]), 2 * x)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(grad_a), 2 * x)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(grad_unused), np.zeros(2))
