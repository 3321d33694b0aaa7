"""Whole-process behaviour: start-up without TensorFlow (Ctrl-C and SIGKILL are in test_resume.py)."""

import subprocess
import sys


def test_cli_import_does_not_load_tensorflow():
    code = ("import sys, kit.cli, kit.data, kit.validation, kit.sources, kit.headers, kit.images, kit.outputs; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
