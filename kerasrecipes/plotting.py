"""Lazy matplotlib: plots import it on first use and write PNG files (nothing opens a window)."""


def pyplot():
    """Returns `matplotlib.pyplot`, imported now (not when kerasrecipes is imported).

    The backend is left as it is: scripts and notebooks keep theirs, and headless machines fall
    back to a non-interactive one by themselves.
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("kerasrecipes plots need matplotlib: pip install matplotlib") from None
    return plt
