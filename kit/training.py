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
from .runs import atomic_write, create_run_dir, new_run_name, release_run_dir, save_model, write_json, write_manifest


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
                            train_images=config.train_images or None, test_images=config.test_images or None,
                            group_col=config.group_col or None)
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
    from .transfer import BACKBONE_FILE, BACKBONES, is_transfer

    if config.backbone_file:
        config = replace(config, model=BACKBONE_FILE)
    if is_transfer(config.model):  # a new head on pretrained features: AdamW at 1e-3, the backbone's own size
        optimizer, learning_rate = "adamw", 1e-3
        default_size = BACKBONES[config.model].image_size if config.model in BACKBONES else 224
    else:
        spec = get_model_spec(config.model)
        optimizer, learning_rate = spec.optimizer, spec.learning_rate
        default_size = int(min(224, max(28, report.median_size)))
    image_size = config.image_size or default_size
    channels = config.channels or report.channels
    name = config.name or new_run_name(config.model)
    return replace(config, image_size=image_size, channels=channels, name=name,
                   optimizer=config.optimizer or optimizer, learning_rate=config.learning_rate or learning_rate)


def split_train_validation(comp: Competition, config: Config) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The folder's own validation/ split when it has one, else a seeded stratified split."""
    if comp.validation is not None:
        return comp.train, comp.validation
    import math

    from sklearn.model_selection import train_test_split

    n_val = math.ceil(config.validation_split * len(comp.train))
    if n_val < len(comp.class_names) or len(comp.train) - n_val < len(comp.class_names):
        raise DataError(f"{comp.train_file}: a validation split of {n_val} of {len(comp.train)} images cannot hold "
                        f"all {len(comp.class_names)} classes on both sides; change --validation-split or add images")
    train, val = train_test_split(comp.train, test_size=n_val, random_state=config.seed,
                                  stratify=comp.train["label"])
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


def _callbacks(run_dir: Path, config: Config, state: dict, target, val_ds=None, val_labels=None):
    """Keras callbacks shared by every phase; `target` is the full model to save (the head may be what is fit).

    The best epoch is chosen by config.metric: accuracy, log_loss (the validation loss) or f1_macro (computed
    from the full model's validation predictions).
    """
    import keras

    def epoch_score(logs) -> float:
        if config.metric == "log_loss":
            return -logs.get("val_loss", np.inf)
        if config.metric == "f1_macro":
            from sklearn.metrics import f1_score

            predicted = np.asarray(target.predict(val_ds, verbose=0)).argmax(1)
            score = f1_score(val_labels, predicted, average="macro")
            logs["val_f1_macro"] = score
            return score
        return logs.get("val_accuracy", -np.inf)

    class BestModel(keras.callbacks.Callback):
        """Keep the best-on-validation model, saved atomically, plus history.csv after every epoch."""

        def __init__(self):
            super().__init__()
            self.best = -np.inf
            self.rows = []

        def on_epoch_end(self, epoch, logs=None):
            logs = dict(logs or {})
            score = epoch_score(logs)
            row = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items() if k != "learning_rate"}}
            lr = self.model.optimizer.learning_rate
            row["learning_rate"] = float(lr.numpy() if hasattr(lr, "numpy") else lr)
            self.rows.append(row)
            with atomic_write(run_dir / "history.csv", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(self.rows[0]), extrasaction="ignore")
                writer.writeheader()
                writer.writerows(self.rows)
            if score > self.best:  # every worker saves (collective ops need all); only the chief's is the run's
                self.best = score
                save_model(target, run_dir / "model.keras")

    class StopOnInterrupt(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if state.get("interrupted"):
                self.model.stop_training = True

    callbacks = [BestModel(), StopOnInterrupt()]
    if config.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=config.early_stopping))
    if config.tensorboard:
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            from .errors import ConfigError

            raise ConfigError("--tensorboard needs the tensorboard package: pip install tensorboard")
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard")))
    return callbacks


def is_chief() -> bool:
    """Under MultiWorkerMirroredStrategy only the chief (worker 0) writes the run folder."""
    import json as _json
    import os

    cluster = _json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    task = cluster.get("task", {})
    return task.get("type", "chief") == "chief" or (task.get("type") == "worker" and task.get("index", 0) == 0
                                                      and "chief" not in cluster.get("cluster", {}))


def train(config: Config, force: bool = False, log=print) -> TrainResult:
    """Validate the data, train the configured model, and write everything to runs/NAME/."""
    from .models import get_model_spec
    from .transfer import is_transfer

    if not is_transfer(config.model):
        get_model_spec(config.model)  # an unknown model fails before any work
    comp, report, skipped = load_and_validate(config)
    config = resolve_config(config, report)
    if config.folds < 2:
        train_df, val_df = split_train_validation(comp, config)  # fails before a run folder exists
    run_dir = create_run_dir(config.runs_dir, config.name, force) if is_chief() else _worker_dir()
    try:
        return _train_in(run_dir, config, comp, report, skipped, train_df if config.folds < 2 else None,
                         val_df if config.folds < 2 else None, log)
    finally:
        release_run_dir(run_dir)


def _train_in(run_dir: Path, config: Config, comp, report, skipped, train_df, val_df, log) -> TrainResult:
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S")
    run_info = {"config": config.__dict__, "data_fingerprint": report.fingerprint, "seed": config.seed,
                "started": started_at}
    write_json(run_dir / "run.json", run_info)
    write_json(run_dir / "config.json", config.__dict__)
    write_json(run_dir / "class_names.json", comp.class_names)
    if skipped:
        with atomic_write(run_dir / "skipped.csv", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "row", "reason"])
            writer.writerows([p.file, p.row, p.message] for p in skipped)
        log(f"Skipping {len(skipped)} bad training image(s); listed in {run_dir / 'skipped.csv'}")
    if config.folds >= 2:
        from .folds import train_folds

        result = train_folds(config, comp, run_dir, log)
    else:
        metrics = fit_run(config, comp.class_names, train_df, val_df, run_dir, log)
        result = TrainResult(run_dir=run_dir, config=config, metrics=metrics,
                             interrupted=metrics.get("interrupted", False))
    from .runs import environment_info

    write_json(run_dir / "run.json", {**run_info, **environment_info(), "ended": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return result


def fit_run(config: Config, class_names: list[str], train_df: pd.DataFrame, val_df: pd.DataFrame, run_dir: Path,
            log=print) -> dict:
    """Train on train_df, keep the best model on val_df, and write model, history, metrics and reports."""
    import keras

    from .transfer import is_transfer

    from .accelerate import configure_devices, make_strategy
    from .pipeline import make_dataset

    strategy = make_strategy(config.strategy)
    configure_devices(config)
    replicas = strategy.num_replicas_in_sync
    batch_size = config.batch_size * replicas  # --batch-size is per replica
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    index = {name: i for i, name in enumerate(class_names)}
    common = dict(image_size=config.image_size, channels=config.channels, batch_size=batch_size)
    train_labels, val_labels = train_df["label"].map(index), val_df["label"].map(index)
    if config.sampling == "balanced":
        from .pipeline import make_balanced_dataset

        train_ds = make_balanced_dataset(train_df["path"], train_labels, seed=config.seed, augment=config.augment,
                                         **common)
    else:
        train_ds = make_dataset(train_df["path"], train_labels, training=True, seed=config.seed,
                                augment=config.augment, **common)
    counts = train_labels.value_counts().sort_index()
    log("Class counts (train): " + ", ".join(f"{class_names[i]}: {n}" for i, n in counts.items()))
    class_weight = None
    if config.class_weight == "balanced":  # n / (classes × count): each class weighs the same in the loss
        class_weight = {int(i): len(train_labels) / (len(class_names) * n) for i, n in counts.items()}
    val_ds = make_dataset(val_df["path"], val_labels, **common)
    log(f"Training {config.model} on {len(train_df)} images ({len(val_df)} for validation), "
        f"{config.image_size}x{config.image_size}x{config.channels}, {len(class_names)} classes"
        + (f", {replicas} replicas ({type(strategy).__name__})" if replicas > 1 else "") + f" → {run_dir}")

    started = time.time()
    started_at = time.strftime("%Y-%m-%d %H:%M:%S")
    state: dict = {}
    verbose = 1 if sys.stdout.isatty() else 2
    steps_per_epoch = -(-len(train_df) // batch_size)
    endless_steps = steps_per_epoch if config.sampling == "balanced" else None  # only the endless stream needs it
    extra: dict = {}
    with stop_on_first_interrupt(state), _explain_multiworker_failure(strategy):
        if is_transfer(config.model):
            from .transfer import build_transfer_model

            with strategy.scope():
                tm = build_transfer_model(config.model, config.image_size, config.channels, len(class_names),
                                          weights=config.weights, backbone_file=config.backbone_file)
            callbacks = _callbacks(run_dir, config, state, tm.model, val_ds, val_labels.to_numpy())
            extra = _fit_transfer(tm, config, strategy, train_df, train_labels, train_ds, val_ds, common,
                                  steps_per_epoch, callbacks, state, verbose, log, class_weight)
        else:
            from .models import build_model, make_optimizer

            with strategy.scope():
                model = build_model(config.model, config.image_size, config.channels, len(class_names))
                model.compile(optimizer=make_optimizer(config.optimizer, config.learning_rate,
                                                       config.epochs * steps_per_epoch),
                              loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                              jit_compile=config.jit_compile)
            callbacks = _callbacks(run_dir, config, state, model, val_ds, val_labels.to_numpy())
            model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, callbacks=callbacks, shuffle=False,
                      verbose=verbose, class_weight=class_weight, steps_per_epoch=endless_steps)
    epochs_run = len(callbacks[0].rows)
    seconds = time.time() - started
    if not (run_dir / "model.keras").exists():
        raise DataError(f"{run_dir}: training stopped before the first epoch ended; nothing to keep")
    if not is_chief():
        return {"interrupted": bool(state.get("interrupted"))}
    write_manifest(run_dir)

    from .predict import predict_validation
    from .reports import write_reports

    val_pred = predict_validation(run_dir, val_df, class_names, config)
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
        **extra,
    }
    write_json(run_dir / "metrics.json", metrics)
    write_reports(run_dir)
    return metrics


@contextmanager
def _explain_multiworker_failure(strategy):
    """Keras 3 cannot yet fit() under MultiWorkerMirroredStrategy; say so in one line instead of a traceback."""
    try:
        yield
    except ValueError as e:
        import tensorflow as tf

        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and "PerReplica" in str(e):
            import keras

            from .errors import ConfigError

            raise ConfigError(f"--strategy multiworker: this Keras ({keras.__version__}) cannot fit() under "
                              "MultiWorkerMirroredStrategy (keras-team/keras#20585); use --strategy mirrored on one "
                              "machine with several GPUs") from None
        raise


def _worker_dir() -> Path:
    """Non-chief workers write their copy somewhere harmless (KIT_WORKER_DIR, else a temporary folder)."""
    import os
    import tempfile

    if os.environ.get("KIT_WORKER_DIR"):
        path = Path(os.environ["KIT_WORKER_DIR"])
        path.mkdir(parents=True, exist_ok=True)
        return path
    return Path(tempfile.mkdtemp(prefix="kit-worker-"))


def _fit_transfer(tm, config: Config, strategy, train_df, train_labels, train_ds, val_ds, common: dict,
                  steps_per_epoch: int, callbacks, state: dict, verbose: int, log, class_weight=None) -> dict:
    endless_steps = steps_per_epoch if config.sampling == "balanced" else None
    """Phase 1: the head on a frozen backbone (on cached features by default); phase 2: fine-tune the top."""
    from .models import make_optimizer
    from .pipeline import augment_batches, make_dataset
    from .transfer import extract_features, unfreeze_top

    loss, metrics = "sparse_categorical_crossentropy", ["accuracy"]
    with strategy.scope():
        optimizer = make_optimizer(config.optimizer, config.learning_rate, config.epochs * steps_per_epoch)
    if config.feature_cache and config.epochs:
        t0 = time.time()
        views = config.feature_views if config.augment != "none" else 1
        plain = make_dataset(train_df["path"], train_labels, **common)  # decoded once, cached, stable order
        # view 0 is the plain image; further views are augmented copies (--feature-views N).
        xs, ys = zip(*[extract_features(tm.features, augment_batches(plain, config.augment, config.seed + v)
                                        if v else plain) for v in range(views)])
        val_x, val_y = extract_features(tm.features, val_ds)
        log(f"Frozen phase: features of {len(train_df)} images × {views} view(s) computed in {time.time() - t0:.0f} s")
        with strategy.scope():
            tm.head.compile(optimizer=optimizer, loss=loss, metrics=metrics)
        tm.head.fit(np.concatenate(xs), np.concatenate(ys), batch_size=common["batch_size"], epochs=config.epochs,
                    validation_data=(val_x, val_y), callbacks=callbacks, shuffle=True, verbose=verbose,
                    class_weight=class_weight)
    elif config.epochs:
        with strategy.scope():
            tm.model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=config.jit_compile)
        tm.model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, callbacks=callbacks, shuffle=False,
                     verbose=verbose, class_weight=class_weight, steps_per_epoch=endless_steps)
    frozen_best = float(callbacks[0].best)
    if config.fine_tune_epochs and not state.get("interrupted"):
        opened = unfreeze_top(tm.backbone, config.fine_tune_layers)
        log(f"Fine-tuning the top {opened} layers of the backbone (BatchNorm frozen) for {config.fine_tune_epochs} "
            f"epoch(s) at learning rate {config.learning_rate / 10:g}")
        with strategy.scope():  # a changed `trainable` needs a fresh compile to take effect
            tm.model.compile(optimizer=make_optimizer("adamw", config.learning_rate / 10,
                                                      config.fine_tune_epochs * steps_per_epoch),
                             loss=loss, metrics=metrics, jit_compile=config.jit_compile)
        tm.model.fit(train_ds, validation_data=val_ds, initial_epoch=config.epochs,
                     epochs=config.epochs + config.fine_tune_epochs, callbacks=callbacks, shuffle=False,
                     verbose=verbose, class_weight=class_weight, steps_per_epoch=endless_steps)
    return {"frozen_val_accuracy": round(frozen_best, 6)}

