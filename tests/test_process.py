"""Whole-process behaviour: start-up without TensorFlow, and Ctrl-C during training."""

import json
import os
import signal
import subprocess
import sys
import time

from conftest import make_av_folder


def test_cli_import_does_not_load_tensorflow():
    code = "import sys, kit.cli, kit.data, kit.images; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_first_ctrl_c_stops_after_the_batch_and_keeps_the_best_model(tmp_path):
    data = make_av_folder(tmp_path / "comp", n_per_class=40)
    run = tmp_path / "runs" / "r"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.Popen([sys.executable, "-m", "kit.cli", "train", str(data), "--runs-dir", str(tmp_path / "runs"),
                             "--name", "r", "--epochs", "500", "--batch-size", "4", "--image-size", "16"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.time() + 120
    while not (run / "history.csv").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert (run / "history.csv").exists(), proc.communicate()[0] if proc.poll() is not None else "no epoch finished"
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert "Stopping after this batch" in output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["interrupted"] is True and metrics["epochs_run"] < 500
    assert (run / "model.keras").is_file() and (run / "manifest.json").is_file()
