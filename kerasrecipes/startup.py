"""A quiet start for the `kerasrecipes` command: TensorFlow's native log lines kept off stderr.

TensorFlow's native libraries log through absl before anything can configure it ("All log
messages before absl::InitializeLog() is called...", oneDNN, "Could not find cuda drivers", CPU
feature guard, `cuInit` failures); `TF_CPP_MIN_LOG_LEVEL` does not reach those lines. So stderr
is filtered at the file-descriptor level while TensorFlow is imported and its devices listed,
and only lines of that shape are dropped; anything else written meanwhile is passed on.

The console script imports the `kerasrecipes` package (and so Keras and TensorFlow) before its
`main` runs, so `kerasrecipes/__init__.py` calls `import_tensorflow_quietly` first when the
process is that script (`is_cli_start`) and `--verbose` is not on its command line. A library
user's `import kerasrecipes` is not changed.
"""

import os
import re
import sys
import threading

_NATIVE_LOG_LINE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|[IWE]\d{4} [\d:.]+\s+\d+ [\w.\-]+:\d+\]"
    rb"|To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler"
    rb")"
)


def is_cli_start():
    """True in the `kerasrecipes` console script, unless `--verbose` (or help) was asked for."""
    script = os.path.basename(sys.argv[0] if sys.argv else "").lower()
    if script not in ("kerasrecipes", "kerasrecipes.exe", "kerasrecipes-script.py"):
        return False
    return not {"--verbose", "-h", "--help"} & set(sys.argv[1:])


def drop_native_log_lines(text):
    """`text` (bytes) without TensorFlow's native start-up log lines."""
    return b"".join(line for line in text.splitlines(keepends=True)
                    if not _NATIVE_LOG_LINE.match(line))


def import_tensorflow_quietly():
    """Imports TensorFlow (if installed and not imported yet) without its native start-up lines.

    Also sets `TF_CPP_MIN_LOG_LEVEL=2` (unless set) so later native INFO and WARNING lines stay
    quiet (e.g. tf.data's "The calling iterator did not fully read the dataset being cached" each
    time a first batch is checked: harmless, the cache fills on the first full epoch; what a
    user must know, kerasrecipes says itself); errors still show. `--verbose` shows everything.
    """
    import importlib.util

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules or importlib.util.find_spec("tensorflow") is None:
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        read_end, write_end = os.pipe()
    except (OSError, ValueError, AttributeError):
        return  # No file descriptor 2 to filter (embedded interpreter): stay loud.
    captured = []

    def pump():
        while True:
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            captured.append(chunk)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices()  # Device discovery logs (cuInit) happen here.
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # Closes the pipe's last write end: the reader sees EOF.
        os.close(saved)
        reader.join(timeout=10)
        os.close(read_end)
        kept = drop_native_log_lines(b"".join(captured))
        if kept:
            os.write(2, kept)
