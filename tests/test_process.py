"""Whole-process behaviour: start-up without TensorFlow (Ctrl-C and SIGKILL are in test_resume.py)."""

import subprocess
import sys


def test_cli_import_does_not_load_tensorflow():
    code = ("import sys, kit.cli, kit.data, kit.validation, kit.sources, kit.headers, kit.images, kit.outputs; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_a_training_process_ends_quickly_but_cleanly(tmp_path):
    """kit.cli.main ends the process itself once TensorFlow is loaded (its teardown costs seconds): the exit code,
    the output, the removal of temporary caches and the worker processes must survive that."""
    import os

    from conftest import make_av_folder

    data = make_av_folder(tmp_path / "c", n_per_class=700)  # 2,100 images: validated in worker processes
    temp = tmp_path / "temp"
    temp.mkdir()
    command = [sys.executable, "-m", "kit", "run", str(data), "--runs-dir", str(tmp_path / "runs"), "--name", "r",
               "--epochs", "1", "--image-size", "8", "--model", "small", "--cache-memory-gb", "0"]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TMPDIR": str(temp)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Caching the decoded images" in result.stderr  # a temporary disk cache was made…
    assert list(temp.iterdir()) == []  # …and removed at exit
    assert result.stdout.splitlines()[-1].startswith("Report: ")  # stdout flushed to its last line
    assert (tmp_path / "runs" / "r" / "submission.csv").is_file()
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 2 and again.stderr.splitlines()[-1].startswith("Error: ") and "--force" in again.stderr
