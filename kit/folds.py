"""Stratified (optionally grouped) k-fold training: K fold models in one run folder, out-of-fold predictions
keyed by id (oof.csv) and the OOF score with its per-fold spread."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from .config import Config
from .data import Competition
from .errors import DataError
from .runs import atomic_write, write_json


def fold_assignments(labels, k: int, seed: int, groups=None) -> np.ndarray:
    """Fold index per row: stratified by label, rows of one group kept together, reproducible from the seed."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    labels = np.asarray(labels)
    if len(labels) < k:
        raise DataError(f"--folds {k}: only {len(labels)} training images")
    smallest = pd.Series(labels).value_counts().min()
    if smallest < k:
        raise DataError(f"--folds {k}: the smallest class has {smallest} image(s); every class needs at least {k}")
    splitter = StratifiedGroupKFold(k, shuffle=True, random_state=seed) if groups is not None else \
        StratifiedKFold(k, shuffle=True, random_state=seed)
    folds = np.full(len(labels), -1)
    for fold, (_, val_idx) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
        folds[val_idx] = fold
    return folds


def train_folds(config: Config, comp: Competition, run_dir: Path, log=print, resume: bool = False):
    """Train one model per fold into run_dir/fold<k>/, then write oof.csv and the OOF metrics.

    With resume, finished folds are kept, the fold that was interrupted continues from its checkpoint, and a
    fold stopped before its first checkpoint starts again.
    """
    import shutil

    from .quiet import keras

    from .checkpoints import read_progress
    from .reports import write_reports
    from .runs import read_json
    from .training import TrainResult, fit_skipping_broken

    train = comp.train
    groups = train["group"].to_numpy() if "group" in train else None
    folds = fold_assignments(train["label"], config.folds, config.seed, groups)
    assignment = pd.DataFrame({"id": train["id"].astype(str), "fold": folds})
    if resume and (run_dir / "folds.csv").is_file():  # same data and seed give the same folds; say so if not
        stored = pd.read_csv(run_dir / "folds.csv", dtype={"id": str}, keep_default_na=False)
        if not stored.equals(assignment):
            from .errors import RunError

            raise RunError(f"{run_dir / 'folds.csv'}: the folds of this data differ from the run's; start a new run")
    with atomic_write(run_dir / "folds.csv", newline="", encoding="utf-8") as f:
        assignment.to_csv(f, index=False)
    fold_metrics, interrupted = [], False
    for k in range(config.folds):
        fold_dir = run_dir / f"fold{k}"
        done = read_json(fold_dir / "metrics.json") if resume and (fold_dir / "metrics.json").is_file() else {}
        if done and not done.get("interrupted"):
            log(f"Fold {k + 1}/{config.folds}: finished before, kept")
            write_reports(fold_dir)  # again: the kill may have come while they were being written
            fold_metrics.append(done)
            continue
        log(f"Fold {k + 1}/{config.folds}")
        fold_resume = resume and read_progress(fold_dir) is not None
        if not fold_resume and fold_dir.exists():  # stopped before its first checkpoint: nothing to keep
            shutil.rmtree(fold_dir)
        fold_dir.mkdir(exist_ok=True)
        fold_config = replace(config, name=f"fold{k}", runs_dir=str(run_dir), folds=0)
        write_json(fold_dir / "config.json", fold_config.__dict__)
        write_json(fold_dir / "class_names.json", comp.class_names)
        metrics = fit_skipping_broken(fold_config, comp.class_names, train[folds != k].reset_index(drop=True),
                          train[folds == k].reset_index(drop=True), fold_dir, log, resume=fold_resume)
        fold_metrics.append(metrics)
        keras.backend.clear_session()  # free the fold's graph before building the next model
        if metrics.get("interrupted"):
            interrupted = True
            break
    if fold_metrics and fold_metrics[-1].get("worker"):  # a non-chief worker: worker 0 writes the results
        return TrainResult(run_dir=run_dir, config=config, interrupted=interrupted,
                           metrics={"worker": True, "epochs_run": sum(m["epochs_run"] for m in fold_metrics)})
    parts = []
    for k in range(len(fold_metrics)):
        part = pd.read_csv(run_dir / f"fold{k}" / "val_predictions.csv", dtype={"id": str, "label": str,
                                                                                "predicted": str},
                           keep_default_na=False)
        parts.append(part.assign(fold=k))
    oof = pd.concat(parts, ignore_index=True)
    with atomic_write(run_dir / "oof.csv", newline="", encoding="utf-8") as f:
        oof.to_csv(f, index=False)
    accuracies = [m["val_accuracy"] for m in fold_metrics]
    metrics = {
        "val_accuracy": float((oof["label"] == oof["predicted"]).mean()),  # the OOF accuracy
        "val_loss": float(-np.mean(np.log(np.clip(oof["p_true"], 1e-7, 1.0)))),
        "oof_accuracy": float((oof["label"] == oof["predicted"]).mean()),
        "fold_accuracies": accuracies,
        "fold_accuracy_mean": float(np.mean(accuracies)),
        "fold_accuracy_std": float(np.std(accuracies)),
        "folds": config.folds,
        "epochs_run": int(sum(m["epochs_run"] for m in fold_metrics)),
        "train_seconds": round(sum(m["train_seconds"] for m in fold_metrics), 1),
        "num_train": len(train),
        "num_validation": len(oof),
        "interrupted": interrupted,
        "started": fold_metrics[0]["started"],
        "model": config.model,
    }
    write_json(run_dir / "metrics.json", metrics)
    write_reports(run_dir)
    log(f"Out-of-fold accuracy {metrics['oof_accuracy']:.4f} (folds: {np.mean(accuracies):.4f} ± "
        f"{np.std(accuracies):.4f})")
    return TrainResult(run_dir=run_dir, config=config, metrics=metrics, interrupted=interrupted)
