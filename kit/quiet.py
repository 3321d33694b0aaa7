"""TensorFlow starts quietly: its start-up log lines are silenced while it loads and finds its devices.

TensorFlow 2.21 writes "All log messages before absl::InitializeLog()", oneDNN notices, "Could not find cuda
drivers", a cuInit error on every machine without a GPU and the CPU-instruction notice straight to file
descriptor 2 from C++, before TF_CPP_MIN_LOG_LEVEL is read, so kit points that descriptor at /dev/null while
TensorFlow imports and initialises (tested: nothing of it reaches the user). Importing this module does that
once; kit's modules that use TensorFlow import it first. Errors after start-up are untouched, and nothing is
silenced with `kit --debug` (KIT_DEBUG=1) or when the user set TF_CPP_MIN_LOG_LEVEL themselves.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager


@contextmanager
def stderr_silenced():
    """File descriptor 2 to /dev/null for the duration (C++ libraries write there directly, not to sys.stderr)."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _load_tensorflow() -> None:
    if "tensorflow" in sys.modules:
        return
    chosen_by_user = "TF_CPP_MIN_LOG_LEVEL" in os.environ and not os.environ.get("KIT_SET_TF_LOG_LEVEL")
    if os.environ.get("KIT_DEBUG") or chosen_by_user:
        import tensorflow  # noqa: F401 - loaded as the user asked, logs and all
        return
    # Later C++ info and warning lines too (errors still show); marked as kit's so child processes do the same.
    os.environ.update(TF_CPP_MIN_LOG_LEVEL="2", KIT_SET_TF_LOG_LEVEL="1")
    with stderr_silenced():
        import tensorflow as tf

        tf.config.list_logical_devices()  # device discovery (cuInit) prints its own lines: now, silenced
    # Python-side warnings such as "5 out of the last 5 calls … triggered tf.function retracing", which a notebook
    # predicting several batches of different sizes would see: about TensorFlow's internals, not the user's work.
    tf.get_logger().setLevel("ERROR")


_load_tensorflow()
import keras  # noqa: E402,F401 - after TensorFlow's quiet start; re-exported
import tensorflow  # noqa: E402,F401 - re-exported: `from .quiet import tensorflow as tf`
