"""The walkthrough notebooks: in sync with `notebooks/_build.py`, and they run top to bottom.

The execution test is slow (one fresh kernel per notebook, real Keras training on tiny subsets
with `KERASRECIPES_NOTEBOOK_QUICK=1`); CI runs it with `pytest -m slow`.
"""

import importlib.util
import os
import signal
import time

import pytest

nbformat = pytest.importorskip("nbformat")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = os.path.join(ROOT, "notebooks")
# Each notebook takes ~1-2 minutes in quick mode on 2 CPU cores; the limit allows a busy machine.
NOTEBOOK_TIMEOUT = 600


def _load_builder():
    spec = importlib.util.spec_from_file_location("_build", os.path.join(NOTEBOOKS, "_build.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUILDER = _load_builder()
NAMES = list(BUILDER.NOTEBOOKS)


def test_every_notebook_is_built_and_committed():
    on_disk = sorted(f[:-len(".ipynb")] for f in os.listdir(NOTEBOOKS) if f.endswith(".ipynb"))
    assert on_disk == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_matches_build_script(name):
    """The committed notebook has exactly the cells `_build.py` generates (edit the script)."""
    committed = nbformat.read(os.path.join(NOTEBOOKS, name + ".ipynb"), as_version=4)
    built = BUILDER.build(name)
    assert [(c.cell_type, c.source) for c in committed.cells] == \
        [(c.cell_type, c.source) for c in built.cells]


def _alarm(signum, frame):
    raise TimeoutError(f"notebook took more than {NOTEBOOK_TIMEOUT} s")


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_in_quick_mode(name, monkeypatch):
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("tensorflow")
    from nbclient.exceptions import CellExecutionError

    monkeypatch.setenv("KERASRECIPES_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    nb = nbformat.read(os.path.join(NOTEBOOKS, name + ".ipynb"), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(NOTEBOOK_TIMEOUT)
    start = time.time()
    try:
        BUILDER.execute(nb, timeout=NOTEBOOK_TIMEOUT)
    except CellExecutionError as error:
        pytest.fail(f"{name}.ipynb failed in quick mode:\n{error}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    errors = [output for cell in nb.cells if cell.cell_type == "code"
              for output in cell.outputs if output.output_type == "error"]
    assert not errors
    # Every notebook shows its story with plots.
    images = sum(bool({"image/png", "image/jpeg"} & set(output.get("data", {})))
                 for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs)
    assert images >= 1, f"{name}.ipynb produced no plot"
    print(f"{name}: {time.time() - start:.0f} s")
