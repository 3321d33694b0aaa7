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

# Finished runs delete their checkpoints; these tests compare the final ones (model and optimizer) bit for bit.
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", KIT_KEEP_CHECKPOINTS="1")


@pytest.fixture(autouse=True)
def keep_checkpoints(monkeypatch):
    monkeypatch.setenv("KIT_KEEP_CHECKPOINTS", "1")  # the in-process resumes too
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


def wait_for_progress(run_dir, proc, condition, timeout=180):
    """Wait until the run's checkpoint.json satisfies `condition`; returns it."""
    path, deadline = run_dir / "checkpoints" / "checkpoint.json", time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if path.exists() and condition(progress := json.loads(path.read_text())):
            return progress
        time.sleep(0.02)
    raise AssertionError(proc.communicate()[0] if proc.poll() is not None else f"{path}: condition never met")


def kill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory):
    """A conv-BatchNorm-conv backbone file: builds in milliseconds, has a BatchNorm for the fine-tuning to keep."""
    import hashlib

    import keras

    path = tmp_path_factory.mktemp("backbone") / "tiny.keras"
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    keras.Model(inputs, x).save(path)
    return ["--backbone-file", str(path), "--trust-model", hashlib.sha256(path.read_bytes()).hexdigest()]


def test_a_transfer_run_killed_in_each_phase_resumes_bit_for_bit(uninterrupted, tiny_backbone):
    tmp, data = uninterrupted
    # The frozen phase (the head fitted in closed form on cached features: one epoch, checkpointed), then 3
    # fine-tuning epochs; the first kill comes at the frozen phase's checkpoint.
    args = [*tiny_backbone, "--epochs", "15", "--fine-tune-epochs", "3", "--feature-views", "2"]
    full = start_training(data, tmp / "runs", "t-full", *args)
    assert full.wait(timeout=600) == 0, full.communicate()[0]

    run = tmp / "runs" / "t-cut"
    proc = start_training(data, tmp / "runs", "t-cut", *args)
    first = wait_for_progress(run, proc, lambda p: True)
    kill(proc)
    assert first["phase"] == "frozen"
    assert_every_file_complete(run)
    resumed = subprocess.Popen([sys.executable, "-m", "kit", "train", "--resume", str(run)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=ENV)
    wait_for_progress(run, resumed, lambda p: p["phase"] == "fine_tune")
    time.sleep(random.uniform(0.0, 0.3))
    kill(resumed)
    assert_every_file_complete(run)
    second = json.loads((run / "checkpoints" / "checkpoint.json").read_text())
    assert second["phase"] == "fine_tune" or second["epoch"] == 1  # killed after the frozen phase ended

    result = CliRunner().invoke(cli, ["train", "--resume", str(run)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"Resuming at epoch {second['epoch'] + 1} ({second['phase'].replace('_', '-')} phase)" in result.output
    assert_every_file_complete(run)
    (p_full, a_full), (p_cut, a_cut) = final_state(tmp / "runs" / "t-full"), final_state(run)
    assert p_full["epoch"] == p_cut["epoch"] == 4 and p_cut["phase"] == "fine_tune" and len(a_full) == len(a_cut)
    differing = [i for i, (a, b) in enumerate(zip(a_full, a_cut)) if not np.array_equal(a, b)]
    assert differing == [], f"killed at {first} then {second['epoch']}/{second['step']}: arrays {differing} differ"
    metrics = [json.loads((r / "metrics.json").read_text()) for r in (tmp / "runs" / "t-full", run)]
    assert metrics[0]["frozen_val_score"] == metrics[1]["frozen_val_score"]
    assert pd.read_csv(run / "history.csv")["epoch"].tolist() == list(range(1, 5))


def test_a_k_fold_run_killed_in_its_second_fold_keeps_the_first_and_resumes_the_second(uninterrupted):
    import hashlib

    tmp, data = uninterrupted
    args = ["--folds", "2", "--epochs", "2"]
    full = start_training(data, tmp / "runs", "k-full", *args)
    assert full.wait(timeout=600) == 0, full.communicate()[0]

    run = tmp / "runs" / "k-cut"
    proc = start_training(data, tmp / "runs", "k-cut", *args)
    wait_for(run / "fold1" / "checkpoints" / "checkpoint.json", proc)
    time.sleep(random.uniform(0.0, 0.5))
    kill(proc)
    assert_every_file_complete(run)
    fold0_model = hashlib.sha256((run / "fold0" / "model.keras").read_bytes()).hexdigest()

    result = CliRunner().invoke(cli, ["train", "--resume", str(run)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Fold 1/2: finished before, kept" in result.output
    assert hashlib.sha256((run / "fold0" / "model.keras").read_bytes()).hexdigest() == fold0_model
    assert_every_file_complete(run)
    for fold in ("fold0", "fold1"):
        (_, a_full), (_, a_cut) = final_state(tmp / "runs" / "k-full" / fold), final_state(run / fold)
        assert all(np.array_equal(a, b) for a, b in zip(a_full, a_cut)), fold
    metrics = json.loads((run / "metrics.json").read_text())
    assert not metrics["interrupted"] and len(metrics["fold_accuracies"]) == 2
    assert pd.read_csv(run / "oof.csv").equals(pd.read_csv(tmp / "runs" / "k-full" / "oof.csv"))
