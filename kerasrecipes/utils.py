"""Small shared helpers."""

import os


def cache_dir():
    """The kerasrecipes cache folder: `$KERASRECIPES_CACHE` or `~/.cache/kerasrecipes`.

    Converted weights and the extracted demo data live here.

    Example:
    >>> os.path.basename(cache_dir())  # 'kerasrecipes' unless $KERASRECIPES_CACHE is set
    """
    path = os.environ.get("KERASRECIPES_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "kerasrecipes"
    )
    return os.path.abspath(path)
