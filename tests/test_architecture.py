"""ARCHITECTURE.md's module map matches the tree: every module is named, every named one exists."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "kerasrecipes")


def _modules():
    """Paths of the library's modules relative to `kerasrecipes/` (`train.py`, `data/scan.py`)."""
    found = []
    for folder, dirs, files in os.walk(PACKAGE):
        dirs[:] = [d for d in dirs if not d.startswith((".", "__")) and d != "assets"]
        for name in files:
            if name.endswith(".py") and name != "__init__.py":
                found.append(os.path.relpath(os.path.join(folder, name), PACKAGE))
    return sorted(found)


def _text():
    with open(os.path.join(ROOT, "ARCHITECTURE.md")) as f:
        return f.read()


def test_every_module_is_on_the_map():
    text = _text()
    missing = []
    for module in _modules():
        folder = os.path.dirname(module)
        # A top-level module by its file name; a package's module by the package (whose row
        # may name its modules or say what they are).
        named = f"`{module}`" in text or (f"{folder}/" in text if folder else
                                            re.search(rf"`{re.escape(module)}`", text))
        if not named:
            missing.append(module)
    assert not missing, f"ARCHITECTURE.md does not name {missing}"


def test_every_module_on_the_map_exists():
    text = _text()
    modules = set(_modules())
    named = set(re.findall(r"`((?:[a-z_]+/)?[a-z_]+\.py)`", text))
    gone = []
    for name in named:
        if name in modules or name == "__init__.py":
            continue
        if "/" not in name and any(m.endswith("/" + name) for m in modules):
            continue  # a package's module named inside its package's row
        gone.append(name)
    assert not gone, f"ARCHITECTURE.md names modules that do not exist: {sorted(gone)}"
    for folder in re.findall(r"`([a-z_]+)/`", text):
        assert os.path.isdir(os.path.join(PACKAGE, folder)), folder
