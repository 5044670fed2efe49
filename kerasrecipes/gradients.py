"""Backend-agnostic gradients: `value_and_gradients` on TensorFlow, JAX and torch."""

import keras


def value_and_gradients(fn, values):
    """`fn(values) -> (scalar, aux)` and the gradients of the scalar w.r.t. `values`.

    The one place that knows how each backend differentiates: `tf.GradientTape` (TensorFlow),
    `jax.value_and_grad` (JAX, traceable inside `jax.jit`), `torch.autograd.grad` (torch).
    `fn` must read every variable it differentiates through from `values` (e.g. through a
    `keras.StatelessScope`), not from the variables themselves.

    Args:
        fn: callable `list of tensors -> (scalar tensor, aux)`; `aux` is any nest of tensors.
        values: list of float tensors (or arrays) to differentiate with respect to.

    Returns:
        `(scalar, aux, gradients)`, gradients aligned with `values` (zeros where unconnected).
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        values = [tf.convert_to_tensor(v) for v in values]
        with tf.GradientTape() as tape:
            tape.watch(values)
            value, aux = fn(values)
        gradients = tape.gradient(value, values,
                                  unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return value, aux, gradients
    if backend == "jax":
        import jax

        (value, aux), gradients = jax.value_and_grad(fn, has_aux=True)(
            [keras.ops.convert_to_tensor(v) for v in values])
        return value, aux, gradients
    if backend == "torch":
        import torch

        leaves = [keras.ops.convert_to_tensor(v).detach().requires_grad_(True) for v in values]
        with torch.enable_grad():
            value, aux = fn(leaves)
            gradients = torch.autograd.grad(value, leaves, allow_unused=True)
        gradients = [torch.zeros_like(leaf) if g is None else g
                     for g, leaf in zip(gradients, leaves)]
        aux = keras.tree.map_structure(lambda t: t.detach(), aux)
        return value.detach(), aux, gradients
    raise NotImplementedError(
        "Gradients need the TensorFlow, JAX or torch backend. "
        f"Received: backend={backend!r} (set KERAS_BACKEND)"
    )
