"""kit speaks only when it has something to say (#20): no TensorFlow start-up lines, progress on stderr, results on
stdout, nothing but results with --quiet. A real process: the lines come from C++ straight to file descriptor 2."""

import re
import os
import subprocess
import sys

from conftest import make_av_folder

NOISE = ("absl::InitializeLog", "oneDNN", "cuda", "cuInit", "I0000", "E0000", "W0000", "rebuild TensorFlow")


def kit(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "KIT_SET_TF_LOG_LEVEL")}
    return subprocess.run([sys.executable, "-m", "kit.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_results_on_stdout_progress_on_stderr_and_no_tensorflow_noise(tmp_path):
    data = make_av_folder(tmp_path / "c")
    fast = ["--epochs", "1", "--batch-size", "8", "--image-size", "8"]
    loud = kit("run", data, "--runs-dir", tmp_path / "runs", "--name", "a", *fast, cwd=tmp_path)
    assert loud.returncode == 0, loud.stderr
    for line in (loud.stdout + loud.stderr).splitlines():
        assert not any(n in line for n in NOISE), line
    assert re.search(r"on CPU( \(bfloat16 arithmetic\))? →", loud.stderr)  # which device kit trains on, and how
    assert loud.stdout.splitlines()[0].startswith("Validation accuracy")  # results only on stdout
    assert "Class counts" in loud.stderr and "Class counts" not in loud.stdout
    quiet = kit("--quiet", "run", data, "--runs-dir", tmp_path / "runs", "--name", "b", *fast, cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert [line.split(" ")[0] for line in quiet.stdout.splitlines()] == ["Validation", "Run", "Submission:", "Report:"]
