"""Train one run: validate the folder, split, fit with callbacks, and leave a self-describing runs/NAME/."""

from __future__ import annotations

import csv
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .config import Config
from .data import Competition, ValidationReport, load_competition, validate
from .errors import DataError
from .runs import atomic_write, create_run_dir, new_run_name, save_model, write_json, write_manifest


@dataclass
class TrainResult:
    run_dir: Path
    config: Config
    metrics: dict
    interrupted: bool = False


class ValidationFailed(DataError):
    """Raised when a data folder has errors: the message shows the first and how to see all."""

    def __init__(self, report: ValidationReport, data: str):
        self.report = report
        errors = report.errors
        more = f" (and {len(errors) - 1} more; run `kit validate {data}` to list them)" if len(errors) > 1 else ""
        super().__init__(f"{errors[0]}{more}")


SKIPPABLE = {"missing_image", "unreadable_image"}


def load_and_validate(config: Config) -> tuple[Competition, ValidationReport, list]:
    """Read and check the folder; with on_bad_image="skip", drop bad training images instead of failing."""
    comp = load_competition(config.data, label_col=config.label_col or None,
                            train_images=config.train_images or None, test_images=config.test_images or None)
    report = validate(comp)
    skipped = []
    if config.on_bad_image == "skip":
        skipped = sorted((p for p in report.errors if p.code in SKIPPABLE and p.file == comp.train_file),
                         key=lambda p: p.row or 0)
        bad_rows = {p.row for p in skipped}
        report.problems = [p for p in report.problems if p not in skipped]
        comp.train = comp.train[~comp.train["row"].isin(bad_rows)].reset_index(drop=True)
    if report.errors:
        raise ValidationFailed(report, config.data)
    return comp, report, skipped


def resolve_config(config: Config, report: ValidationReport) -> Config:
    """Fill in what the data decides: image size (median side, 28..224) and channels (1 if all grayscale)."""
    from .models import get_model_spec

    spec = get_model_spec(config.model)
    image_size = config.image_size or int(min(224, max(28, report.median_size)))
    channels = config.channels or report.channels
    name = config.name or new_run_name(config.model)
    return replace(config, image_size=image_size, channels=channels, name=name,
                   optimizer=config.optimizer or spec.optimizer, learning_rate=config.learning_rate or spec.learning_rate)


def split_train_validation(comp: Competition, config: Config) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The folder's own validation/ split when it has one, else a seeded stratified split."""
    if comp.validation is not None:
        return comp.train, comp.validation
    from sklearn.model_selection import train_test_split

    train, val = train_test_split(comp.train, test_size=config.validation_split, random_state=config.seed,
                                  stratify=comp.train["label"])
    if len(val) < len(comp.class_names):
        raise DataError(f"{comp.train_file}: validation split of {len(val)} images cannot hold all "
                        f"{len(comp.class_names)} classes; raise --validation-split or add images")
    return train.reset_index(drop=True), val.reset_index(drop=True)


@contextmanager
def stop_on_first_interrupt(state: dict):
    """First Ctrl-C: finish the current batch and stop cleanly; second Ctrl-C: stop at once."""
    def handler(signum, frame):
        if state.get("interrupted"):
            raise KeyboardInterrupt
        state["interrupted"] = True
        print("\nStopping after this batch (Ctrl-C again to abort at once)…", file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, previous)


def _callbacks(run_dir: Path, config: Config, state: dict):
    import keras

    class BestModel(keras.callbacks.Callback):
        """Keep the best-on-validation model, saved atomically, plus history.csv after every epoch."""

        def __init__(self):
            super().__init__()
            self.best = -np.inf
            self.rows = []

        def on_epoch_end(self, epoch, logs=None):
            logs = dict(logs or {})
            row = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}}
            if "learning_rate" not in row:
                lr = self.model.optimizer.learning_rate
                row["learning_rate"] = float(lr.numpy() if hasattr(lr, "numpy") else lr)
            self.rows.append(row)
            with atomic_write(run_dir / "history.csv", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(self.rows[0]))
                writer.writeheader()
                writer.writerows(self.rows)
            score = logs.get("val_accuracy", -np.inf)
            if score > self.best:
                self.best = score
                save_model(self.model, run_dir / "model.keras")

    class StopOnInterrupt(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if state.get("interrupted"):
                self.model.stop_training = True

    callbacks = [BestModel(), StopOnInterrupt()]
    if config.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=config.early_stopping))
    return callbacks


def train(config: Config, force: bool = False, log=print) -> TrainResult:
    """Validate the data, train the configured model, and write everything to runs/NAME/."""
    from .models import build_model, get_model_spec, make_optimizer

    get_model_spec(config.model)  # an unknown model fails before any work
    comp, report, skipped = load_and_validate(config)
    config = resolve_config(config, report)
    train_df, val_df = split_train_validation(comp, config)
    run_dir = create_run_dir(config.runs_dir, config.name, force)
    write_json(run_dir / "config.json", config.__dict__)
    write_json(run_dir / "class_names.json", comp.class_names)
    if skipped:
        with atomic_write(run_dir / "skipped.csv", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "row", "reason"])
            writer.writerows([p.file, p.row, p.message] for p in skipped)
        log(f"Skipping {len(skipped)} bad training image(s); listed in {run_dir / 'skipped.csv'}")

    import keras
    from .pipeline import make_dataset

    keras.utils.set_random_seed(config.seed)
    index = {name: i for i, name in enumerate(comp.class_names)}
    common = dict(image_size=config.image_size, channels=config.channels, batch_size=config.batch_size)
    train_ds = make_dataset(train_df["path"], train_df["label"].map(index), training=True, seed=config.seed,
                            augment=config.augment, **common)
    val_ds = make_dataset(val_df["path"], val_df["label"].map(index), **common)

    model = build_model(config.model, config.image_size, config.channels, len(comp.class_names))
    steps = config.epochs * -(-len(train_df) // config.batch_size)
    model.compile(optimizer=make_optimizer(config.optimizer, config.learning_rate, steps),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    log(f"Training {config.model} on {len(train_df)} images ({len(val_df)} for validation), "
        f"{config.image_size}x{config.image_size}x{config.channels}, {len(comp.class_names)} classes → {run_dir}")

    started = time.time()
    started_at = time.strftime("%Y-%m-%d %H:%M:%S")
    state: dict = {}
    with stop_on_first_interrupt(state):
        history = model.fit(train_ds, validation_data=val_ds, epochs=config.epochs,
                            callbacks=_callbacks(run_dir, config, state), shuffle=False,
                            verbose=1 if sys.stdout.isatty() else 2)
    seconds = time.time() - started
    if not (run_dir / "model.keras").exists():
        raise DataError(f"{run_dir}: training stopped before the first epoch ended; nothing to keep")
    write_manifest(run_dir)

    from .predict import predict_validation
    from .reports import write_reports

    val_pred = predict_validation(run_dir, val_df, comp.class_names, config)
    epochs_run = len(history.history.get("loss", []))
    metrics = {
        "val_accuracy": float((val_pred["label"] == val_pred["predicted"]).mean()),
        "val_loss": float(-np.mean(np.log(np.clip(val_pred["p_true"], 1e-7, 1.0)))),
        "epochs_run": epochs_run,
        "train_seconds": round(seconds, 1),
        "num_train": len(train_df),
        "num_validation": len(val_df),
        "interrupted": bool(state.get("interrupted")),
        "started": started_at,
        "model": config.model,
    }
    write_json(run_dir / "metrics.json", metrics)
    write_reports(run_dir)
    return TrainResult(run_dir=run_dir, config=config, metrics=metrics, interrupted=bool(state.get("interrupted")))
