"""Killed and interrupted runs: complete files at any instant, bit-identical resume, refusals, Ctrl-C."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from conftest import make_av_folder, make_image
from kit.checkpoints import unreadable_files
from kit.cli import cli

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
RESUMABLE = ["--batch-size", "4", "--image-size", "16", "--augment", "light", "--deterministic",
             "--checkpoint-every", "2"]


def start_training(data, runs, name, *extra):
    return subprocess.Popen([sys.executable, "-m", "kit", "train", str(data), "--runs-dir", str(runs), "--name", name,
                             *RESUMABLE, *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=ENV)


def wait_for(path, proc, timeout=180):
    deadline = time.time() + timeout
    while not path.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert path.exists(), proc.communicate()[0] if proc.poll() is not None else f"{path} never appeared"


def assert_every_file_complete(run_dir):
    """Each file kit left (temporary files aside) parses or loads in full."""
    assert unreadable_files(run_dir) == []


def final_state(run_dir):
    progress = json.loads((run_dir / "checkpoints" / "checkpoint.json").read_text())
    with np.load(run_dir / "checkpoints" / progress["file"], allow_pickle=False) as arrays:
        return progress, [arrays[k] for k in sorted(arrays.files, key=lambda k: int(k.split("_")[1]))]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    data = make_av_folder(tmp / "comp", n_per_class=20)
    proc = start_training(data, tmp / "runs", "full", "--epochs", "4")
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    return tmp, data


def test_sigkill_at_a_random_moment_then_resume_matches_the_uninterrupted_run_bit_for_bit(uninterrupted):
    tmp, data = uninterrupted
    run = tmp / "runs" / "cut"
    proc = start_training(data, tmp / "runs", "cut", "--epochs", "4")
    wait_for(run / "checkpoints" / "checkpoint.json", proc)
    time.sleep(random.uniform(0.0, 1.5))  # anywhere in the run: mid-batch, mid-checkpoint, mid-validation
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert_every_file_complete(run)
    killed_at = json.loads((run / "checkpoints" / "checkpoint.json").read_text())

    result = CliRunner().invoke(cli, ["train", "--resume", str(run)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"Resuming at epoch {killed_at['epoch'] + 1}, batch {killed_at['step'] + 1}" in result.output
    assert not [p for p in run.rglob(".*") if p.name != ".lock"]  # the killed process's temporary files are gone
    assert_every_file_complete(run)
    (p_full, full), (p_cut, cut) = final_state(tmp / "runs" / "full"), final_state(run)
    assert p_full["epoch"] == p_cut["epoch"] == 4 and len(full) == len(cut)
    differing = [i for i, (a, b) in enumerate(zip(full, cut)) if not np.array_equal(a, b)]
    assert differing == [], f"killed at {killed_at['epoch']}/{killed_at['step']}: arrays {differing} differ"
    assert [r["val_loss"] for r in p_full["history"]] == [r["val_loss"] for r in p_cut["history"]]
    assert pd.read_csv(run / "history.csv")["epoch"].tolist() == [1, 2, 3, 4]
    assert json.loads((run / "run.json").read_text())["resumed"]


@pytest.fixture(scope="module")
def interrupted(uninterrupted):
    """A long run stopped by one Ctrl-C after its first checkpoint."""
    tmp, data = uninterrupted
    run = tmp / "runs" / "stopped"
    proc = start_training(data, tmp / "runs", "stopped", "--epochs", "200")
    wait_for(run / "checkpoints" / "checkpoint.json", proc)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=180)
    return tmp, data, run, proc.returncode, output


def test_ctrl_c_saves_a_checkpoint_prints_the_resume_command_and_exits_130(interrupted):
    _, _, run, code, output = interrupted
    assert code == 130, output
    assert "Stopping after this batch" in output
    assert f"Resume with: kit train --resume {run}" in output or "resume with: kit train --resume" in output
    progress = json.loads((run / "checkpoints" / "checkpoint.json").read_text())
    assert progress["epoch"] < 200
    assert_every_file_complete(run)


def test_resume_refuses_a_changed_config(interrupted):
    _, _, run, _, _ = interrupted
    result = CliRunner().invoke(cli, ["train", "--resume", str(run), "--epochs", "7", "--learning-rate", "0.5"])
    assert result.exit_code == 2
    assert "cannot resume with a changed config: --epochs 7 (the run has 200); --learning-rate 0.5" in result.output


def test_resume_refuses_changed_data(interrupted):
    _, data, run, _, _ = interrupted
    image = data / "train" / "00000.png"
    original = image.read_bytes()
    make_image("cat", 999, size=16).save(image)
    try:
        result = CliRunner().invoke(cli, ["train", "--resume", str(run)])
    finally:
        image.write_bytes(original)
    assert result.exit_code == 2
    assert f"cannot resume: the data in {data} changed since the run started" in result.output


def test_a_second_process_cannot_train_into_a_locked_run(interrupted):
    _, _, run, _, _ = interrupted
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / ".lock").write_text(str(holder.pid))
        result = CliRunner().invoke(cli, ["train", "--resume", str(run)])
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 2
    assert f"process {holder.pid} is training into this run" in result.output


def test_second_ctrl_c_exits_at_once_leaving_only_complete_files(tmp_path):
    data = make_av_folder(tmp_path / "comp", n_per_class=20)
    run = tmp_path / "runs" / "r"
    proc = start_training(data, tmp_path / "runs", "r", "--epochs", "200")
    wait_for(run / "checkpoints" / "checkpoint.json", proc)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert "Aborted" in output or "Interrupted" in output
    assert_every_file_complete(run)
