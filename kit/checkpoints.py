"""Resumable checkpoints: every variable of the model and its optimizer, plus where training stood.

A checkpoint is RUN/checkpoints/ckpt-EPOCH-STEP.npz (NumPy arrays, no pickle) and checkpoint.json, which names
that file and its sha256. The .npz is written first, then checkpoint.json replaces the old one atomically, then
older .npz files go: killed at any instant, checkpoint.json names a complete file whose hash matches.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import RunError
from .runs import (
    CHECKPOINT_DIR,
    atomic_write,
    load_keras_file,
    read_json,
    sha256_file,
    write_json,
)
from .runs import CHECKPOINT_STATE_FILE as STATE_FILE


def _variables(model) -> list:
    # model.variables includes the seed states of Dropout layers (model.weights does not); the optimizer's hold
    # its moments and the step counter that positions the learning-rate schedule.
    return list(model.variables) + list(model.optimizer.variables)


def save_checkpoint(run_dir, model, progress: dict) -> Path:
    """Write the model's and optimizer's state plus `progress` (epoch, step, best, history…)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    folder.mkdir(exist_ok=True)
    name = f"ckpt-{progress['epoch']:04d}-{progress['step']:06d}.npz"
    with atomic_write(folder / name, "wb") as f:
        np.savez(f, *[np.asarray(v.numpy()) for v in _variables(model)])
    write_json(folder / STATE_FILE, {**progress, "file": name, "sha256": sha256_file(folder / name)})
    for old in folder.glob("ckpt-*.npz"):
        if old.name != name:
            old.unlink()
    return folder / name


def read_progress(run_dir) -> dict | None:
    """Where the run's last checkpoint stands, or None when it has none."""
    path = Path(run_dir) / CHECKPOINT_DIR / STATE_FILE
    return read_json(path) if path.is_file() else None


def restore_checkpoint(run_dir, model) -> dict:
    """Load the last checkpoint into a freshly built and compiled model; returns its progress record."""
    progress = read_progress(run_dir)
    if progress is None:
        raise RunError(f"{Path(run_dir) / CHECKPOINT_DIR / STATE_FILE}: missing; the run stopped before its first "
                       "checkpoint, so start it again (with --force to replace it)")
    path = Path(run_dir) / CHECKPOINT_DIR / progress["file"]
    if not re.fullmatch(r"ckpt-\d+-\d+\.npz", progress["file"]) or not path.is_file():
        raise RunError(f"{path}: missing checkpoint file named by {STATE_FILE}")
    if sha256_file(path) != progress["sha256"]:
        raise RunError(f"{path}: sha256 does not match {STATE_FILE}; the checkpoint was changed after kit wrote it")
    model.optimizer.build(model.trainable_variables)  # create the slots so they can be filled
    targets = _variables(model)
    with np.load(path, allow_pickle=False) as arrays:
        values = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
    if len(values) != len(targets) or any(tuple(v.shape) != tuple(t.shape) for v, t in zip(values, targets)):
        raise RunError(f"{path}: holds {len(values)} arrays that do not fit this model's {len(targets)} variables")
    for target, value in zip(targets, values):
        target.assign(value)
    return progress


def unreadable_files(run_dir) -> list[tuple[Path, str]]:
    """Every file in a run folder (temporary files aside) that does not parse or load in full, with the reason."""


    bad = []
    for path in sorted(Path(run_dir).rglob("*")):
        if path.is_dir() or path.name.startswith("."):
            continue
        try:
            if path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
            elif path.suffix == ".csv":
                pd.read_csv(path)
            elif path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as arrays:
                    [arrays[k] for k in arrays.files]
            elif path.suffix == ".keras":
                load_keras_file(path)
        except Exception as e:
            bad.append((path, str(e).splitlines()[0] if str(e) else type(e).__name__))
    return bad


def remove_checkpoints(run_dir) -> None:
    """A finished run cannot be resumed: its checkpoints (and its folds') go, as Keras' BackupAndRestore deletes
    its backup at the end; they are often as large as the model itself. KIT_KEEP_CHECKPOINTS=1 keeps them, for
    the tests and benchmarks that compare a resumed run's final optimizer state with an uninterrupted one's."""
    import os
    import shutil

    if os.environ.get("KIT_KEEP_CHECKPOINTS"):
        return
    run_dir = Path(run_dir)
    for folder in [run_dir / CHECKPOINT_DIR, *run_dir.glob(f"fold*/{CHECKPOINT_DIR}")]:
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder)
