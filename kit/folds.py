"""Stratified (optionally grouped) k-fold training: K fold models in one run folder, out-of-fold predictions
keyed by id (oof.csv) and the OOF score with its per-fold spread."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from .budget import Budget
from .callbacks import Checkpointer
from .config import Config
from .data import Competition, strata
from .errors import DataError, RunError
from .fit import FitResult, fit_skipping_broken
from .predict import table_scores
from .quiet import keras
from .reports import read_val_predictions, write_reports
from .runs import (
    FOLDS_FILE,
    METRICS_FILE,
    OOF_FILE,
    read_config,
    read_metrics,
    write_json,
    write_run_settings,
    write_decision,
    write_table,
)


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


def train_folds(config: Config, comp: Competition, run_dir: Path, log=print, resume: bool = False,
                budget: Budget | None = None) -> FitResult:
    """Train one model per fold into run_dir/fold<k>/, then write oof.csv and the OOF metrics.

    With resume, finished folds are kept, the fold that was interrupted continues from its checkpoint, and a
    fold stopped before its first checkpoint starts again. With a budget (its predict_images: the test images),
    each fold plans its epochs in its share of the time left (Budget.for_fold).
    """
    train = comp.train
    groups = train["group"].to_numpy() if "group" in train else \
        train["near_duplicate_group"].to_numpy() if "near_duplicate_group" in train else None
    folds = fold_assignments(strata(train["label"], comp.tag_separator, config.folds), config.folds, config.seed, groups)
    _write_folds(run_dir, pd.DataFrame({"id": train["id"].astype(str), "fold": folds}), resume)
    results = []
    for k in range(config.folds):
        fold_budget = budget.for_fold(k, config.folds, int((folds == k).sum())) if budget else None
        result = _fold(config, comp, run_dir, k, folds, log, resume, fold_budget)
        results.append(result)
        if result.interrupted:
            break
    if results[-1].val_predictions is None and results[-1].metrics.get("worker"):  # worker 0 writes the results
        return FitResult({"worker": True, "interrupted": results[-1].interrupted,
                          "epochs_run": sum(r.metrics["epochs_run"] for r in results)}, None)
    oof = pd.concat([r.val_predictions.assign(fold=k) for k, r in enumerate(results)], ignore_index=True)
    write_table(run_dir / OOF_FILE, oof)
    accuracies = [r.metrics["val_accuracy"] for r in results]
    scores, decision = table_scores(oof, comp.class_names, config)  # the decision tuned on every fold's answers
    write_decision(run_dir, decision, comp.class_names)
    metrics = {**scores, "oof_accuracy": scores["val_accuracy"],
               "fold_accuracies": accuracies, "fold_accuracy_mean": float(np.mean(accuracies)),
               "fold_accuracy_std": float(np.std(accuracies)), "folds": config.folds,
               "epochs_run": int(sum(r.metrics["epochs_run"] for r in results)),
               "train_seconds": round(sum(r.metrics["train_seconds"] for r in results), 1), "num_train": len(train),
               "num_validation": len(oof), "interrupted": results[-1].interrupted,
               "started": results[0].metrics["started"], "model": config.model}
    write_json(run_dir / METRICS_FILE, metrics)
    write_reports(run_dir)
    log(f"Out-of-fold accuracy {metrics['oof_accuracy']:.4f} (folds: {np.mean(accuracies):.4f} ± "
        f"{np.std(accuracies):.4f})" + (f", {config.metric} {scores['val_score']:.4f}"
                                        if config.metric != "accuracy" else ""))
    return FitResult(metrics, oof)


def _write_folds(run_dir: Path, assignment: pd.DataFrame, resume: bool) -> None:
    """folds.csv; a resumed run must find the same folds (same data and seed), or it says so."""
    if resume and (run_dir / FOLDS_FILE).is_file():
        stored = pd.read_csv(run_dir / FOLDS_FILE, dtype={"id": str}, keep_default_na=False)
        if not stored.equals(assignment):
            raise RunError(f"{run_dir / FOLDS_FILE}: the folds of this data differ from the run's; start a new run")
    write_table(run_dir / FOLDS_FILE, assignment)


def _fold(config: Config, comp: Competition, run_dir: Path, k: int, folds: np.ndarray, log, resume: bool,
          budget: Budget | None = None) -> FitResult:
    """Fold k: kept when it finished before, continued from its checkpoint, or trained from the start."""
    fold_dir = run_dir / f"fold{k}"
    done = read_metrics(fold_dir) if resume else {}
    if done and not done.get("interrupted"):
        log(f"Fold {k + 1}/{config.folds}: finished before, kept")
        write_reports(fold_dir)  # again: the kill may have come while they were being written
        return FitResult(done, read_val_predictions(fold_dir))
    log(f"Fold {k + 1}/{config.folds}")
    fold_resume = resume and Checkpointer(fold_dir).exists()
    if not fold_resume and fold_dir.exists():  # stopped before its first checkpoint: nothing to keep
        shutil.rmtree(fold_dir)
    fold_dir.mkdir(exist_ok=True)
    fold_config = replace(config, name=f"fold{k}", runs_dir=str(run_dir), folds=0)
    if fold_resume and config.time_budget:  # the epochs its budget planned, recorded in its own config.json
        fold_config = replace(fold_config, epochs=read_config(fold_dir).epochs)
    write_run_settings(fold_dir, fold_config, comp.class_names)
    train = comp.train
    result = fit_skipping_broken(fold_config, comp.class_names, train[folds != k].reset_index(drop=True),
                                 train[folds == k].reset_index(drop=True), fold_dir, log, resume=fold_resume,
                                 budget=None if fold_resume else budget)
    keras.backend.clear_session()  # free the fold's graph before building the next model
    return result
