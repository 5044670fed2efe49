"""Walking a model's layers, nested sub-models included."""


def walk_layers(layer, include_self=False):
    """Yields the layers inside `layer` depth-first, each before the layers it contains.

    Args:
        layer: a `keras.Model` or layer. Layers with a `layers` attribute (models, `Sequential`)
            are walked into.
        include_self: bool. Yield `layer` itself first. Defaults to `False`.

    Example:
    >>> inner = keras.Sequential([keras.layers.Dense(2, name="d")], name="inner")
    >>> model = keras.Sequential([keras.Input((3,)), inner])
    >>> [l.name for l in walk_layers(model)]
    ['inner', 'd']
    """
    if include_self:
        yield layer
    for child in getattr(layer, "layers", None) or []:
        yield child
        yield from walk_layers(child)
