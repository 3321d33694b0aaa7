"""Train one run: validate the folder, split, fit with callbacks, and leave a self-describing runs/NAME/."""

from __future__ import annotations

import csv
import os
import signal
import sys
import time
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .config import Config
from .data import (MIN_IMAGES_PER_CLASS, Competition, ReadOptions, ValidationReport, images_named_on_failure,
                   load_competition, validate)
from .errors import DataError, ImageError, OutputError
from .outputs import inside
from .runs import (MARK, atomic_write, create_run_dir, new_run_name, release_run_dir, save_model, write_json,
                   write_manifest)


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


def load_and_validate(config: Config, progress: bool = False) -> tuple[Competition, ValidationReport, list]:
    """Read and check the folder; with on_bad_image="skip", drop bad training images instead of failing."""
    comp = load_competition(config.data, ReadOptions.of(config))
    report = validate(comp, progress=progress)
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
    """Fill in what the data decides: image size (median side, 28..224), channels (1 if all grayscale) and what
    --augment auto means."""
    from .config import resolve_augment
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
    augment = resolve_augment(config.augment, is_transfer(config.model))
    return replace(config, data=os.path.abspath(config.data), image_size=image_size, channels=channels, name=name,
                   augment=augment,
                   optimizer=config.optimizer or optimizer, learning_rate=config.learning_rate or learning_rate)


def split_train_validation(comp: Competition, config: Config) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The folder's own validation/ split when it has one, else a seeded stratified split."""
    if comp.validation is not None:
        return comp.train, comp.validation
    import math

    from sklearn.model_selection import train_test_split

    counts = comp.train["label"].value_counts()
    single = comp.train["label"].map(counts) < MIN_IMAGES_PER_CLASS  # kept in training only (one image each)
    splittable = comp.train[~single]
    classes = int((counts >= MIN_IMAGES_PER_CLASS).sum())
    n_val = math.ceil(config.validation_split * len(splittable))
    if classes == 0:
        raise DataError(f"{comp.train_file}: no class has two images, so nothing can be held out for validation; "
                        "add images, or give a validation/ folder")
    if n_val < classes or len(splittable) - n_val < classes:  # many small classes: stratifying is impossible
        train, val = _split_keeping_every_class(splittable, n_val, config.seed)
    else:
        train, val = train_test_split(splittable, test_size=n_val, random_state=config.seed,
                                      stratify=splittable["label"])
    train = pd.concat([train, comp.train[single]])
    return train.reset_index(drop=True), val.reset_index(drop=True)


def _split_keeping_every_class(table: pd.DataFrame, n_val: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded random split of about n_val rows that leaves every class at least one training image (for sets with
    more classes than a stratified split can place on both sides, e.g. thousands of two-image classes)."""
    order = table.sample(frac=1.0, random_state=seed)
    left = order["label"].value_counts().to_dict()
    chosen = []
    for index, label in zip(order.index, order["label"]):
        if len(chosen) == n_val:
            break
        if left[label] > 1:
            left[label] -= 1
            chosen.append(index)
    return table.drop(index=chosen), table.loc[chosen]


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


class Progress:
    """Where a run stands: the next epoch and batch, the best score so far and the history rows.

    It is what a checkpoint stores besides the variables, so a resumed run picks up all of it.
    """

    def __init__(self, record: dict | None = None):
        record = record or {}
        self.epoch = record.get("epoch", 0)  # the epoch being trained (0-based)
        self.step = record.get("step", 0)  # batches of that epoch already trained
        self.best = record.get("best", -np.inf)
        self.best_epoch = record.get("best_epoch", 0)
        self.rows = record.get("history", [])
        self.phase = record.get("phase", "frozen")  # transfer runs: "frozen" (head only), then "fine_tune"
        self.frozen_best = record.get("frozen_best")  # transfer runs: the best score of the frozen phase
        self.stopped = False  # early stopping or an interrupt: no further fit() calls
        self.diverged_epoch = None  # the epoch (1-based) whose training loss became NaN or infinite

    def record(self) -> dict:
        return {"epoch": self.epoch, "step": self.step, "best": self.best, "best_epoch": self.best_epoch,
                "history": self.rows, "phase": self.phase, "frozen_best": self.frozen_best}


def _callbacks(run_dir: Path, config: Config, state: dict, target, val_ds=None, val_labels=None,
               progress: Progress | None = None, checkpoints: bool = False):
    """Keras callbacks shared by every phase; `target` is the full model to save (the head may be what is fit).

    The best epoch is chosen by config.metric: accuracy, log_loss (the validation loss) or f1_macro (computed
    from the full model's validation predictions). With `checkpoints`, the fitted model's full state is saved
    after every epoch, every config.checkpoint_every batches, and when Ctrl-C stops the run.
    """
    from .quiet import keras

    from .checkpoints import save_checkpoint

    progress = progress or Progress()

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

    class RunProgress(keras.callbacks.Callback):
        """Best model (saved atomically), history.csv, checkpoints, early stopping and Ctrl-C, epoch by epoch."""

        def __init__(self):
            super().__init__()
            self.progress = progress
            self.first_step = progress.step  # a resumed epoch starts part-way through
            self.mid_epoch = False

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_start = time.perf_counter()
            if epoch != self.progress.epoch:
                self.progress.epoch, self.progress.step, self.first_step = epoch, 0, 0

        def on_train_batch_end(self, batch, logs=None):
            self.progress.step = self.first_step + batch + 1
            loss = (logs or {}).get("loss")
            if loss is not None and not np.isfinite(float(loss)):  # diverged: stop, keep nothing of this epoch
                self.model.stop_training = self.progress.stopped = self.mid_epoch = True
                self.progress.diverged_epoch = self.progress.epoch + 1
                return
            every = config.checkpoint_every
            last = batch + 1 == self.params.get("steps")
            if state.get("interrupted") and not last:  # on the last batch, let the epoch finish and count
                self.model.stop_training = self.progress.stopped = self.mid_epoch = True
                if checkpoints:
                    save_checkpoint(run_dir, self.model, self.progress.record())
            elif checkpoints and every and self.progress.step % every == 0 and not last:  # epoch end saves it
                save_checkpoint(run_dir, self.model, self.progress.record())

        def on_epoch_end(self, epoch, logs=None):
            if self.mid_epoch:  # a partial epoch: its checkpoint is saved, nothing else counts
                return
            p = self.progress
            logs = dict(logs or {})
            score = epoch_score(logs)
            row = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items() if k != "learning_rate"}}
            lr = self.model.optimizer.learning_rate
            row["learning_rate"] = float(lr.numpy() if hasattr(lr, "numpy") else lr)
            row["seconds"] = round(time.perf_counter() - self.epoch_start, 2)  # training + validation, this process
            p.rows.append(row)
            with atomic_write(run_dir / "history.csv", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(p.rows[0]), extrasaction="ignore")
                writer.writeheader()
                writer.writerows(p.rows)
            if score > p.best:  # every worker saves (collective ops need all); only the chief's is the run's
                p.best, p.best_epoch = float(score), epoch + 1
                save_model(target, run_dir / "model.keras")
            p.epoch, p.step, self.first_step = epoch + 1, 0, 0
            if state.get("interrupted") or (config.early_stopping and p.epoch - p.best_epoch >= config.early_stopping):
                self.model.stop_training = p.stopped = True
            if checkpoints:
                save_checkpoint(run_dir, self.model, p.record())

    callbacks = [RunProgress()]
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


def train(config: Config, force: bool = False, log=print, resume: bool = False, command: str = "train"
          ) -> TrainResult:
    """Validate the data, train the configured model, and write everything to runs/NAME/.

    With resume, config must be the run's own (see resume_config) and training continues from its checkpoint.
    `command` (train or run) is only for the resume hint when Ctrl-C stops the run before its first epoch.
    """
    from .errors import Interrupted
    from .models import get_model_spec
    from .transfer import is_transfer

    if resume:
        _check_resumable(config)
    if config.backbone_file:  # a model file kit did not write fails before any work, unless trusted
        from .transfer import check_backbone_file

        check_backbone_file(config.backbone_file, (config.trust_model,))
    elif not is_transfer(config.model):
        get_model_spec(config.model)  # an unknown model fails before any work
    for option, folder in (("--runs-dir", config.runs_dir), ("--cache-dir", config.cache_dir)):
        if folder and config.data and inside(folder, config.data):
            raise OutputError(f"{option} {folder}: inside the data folder {config.data}; kit never writes there, so "
                              f"choose a folder outside it")
    comp, report, skipped = load_and_validate(config, progress=not getattr(log, "quiet", False))
    if command == "run" and comp.test is None:  # kit run ends with a submission: refuse now, not after training
        raise DataError(f"{config.data}: no test table, sample submission or test folder, so no submission can be "
                        "written; use `kit train`, or pass --test-csv/--sample/--test-images")
    config = resolve_config(config, report)
    if config.folds < 2:
        train_df, val_df = split_train_validation(comp, config)  # fails before a run folder exists
    if resume:
        run_dir = _reopen_for_resume(config, report)
    else:
        run_dir = create_run_dir(config.runs_dir, config.name, force) if is_chief() else _worker_dir()
    try:
        return _train_in(run_dir, config, comp, report, skipped, train_df if config.folds < 2 else None,
                         val_df if config.folds < 2 else None, log, resume)
    except Interrupted as e:
        raise Interrupted(f"{e}; " + (resume_hint(run_dir, command) if has_checkpoint(run_dir) else "nothing to keep")
                          ) from None
    finally:
        release_run_dir(run_dir)


RESUME_IGNORES = {"name", "runs_dir", "data"}  # where things are, not what is trained


def resume_config(run_dir, given: dict) -> Config:
    """The run's stored config; any setting given again must equal it (the data is checked by fingerprint)."""
    from dataclasses import asdict

    from .errors import ConfigError
    from .runs import read_config

    run_dir = Path(run_dir)
    stored = asdict(read_config(run_dir))
    changed = [f"--{k.replace('_', '-')} {v} (the run has {stored.get(k)})" for k, v in given.items()
               if v is not None and k not in RESUME_IGNORES and k in stored and stored[k] != v]
    if changed:
        raise ConfigError(f"{run_dir}: cannot resume with a changed config: {'; '.join(changed)}; "
                          "start a new run instead")
    if given.get("data"):
        stored["data"] = given["data"]
    stored.update(name=run_dir.name, runs_dir=str(run_dir.parent))
    return Config(**stored).validate()


def _check_resumable(config: Config) -> None:
    """Refuse what the run folder alone rules out, before the data folder is read and validated."""
    from .errors import RunError
    from .runs import read_json, read_metrics

    run_dir = Path(config.runs_dir) / config.name
    metrics = read_metrics(run_dir)
    if read_json(run_dir / "run.json").get("ended") and not metrics.get("interrupted"):
        raise RunError(f"{run_dir}: the run already finished; nothing to resume")
    if not has_checkpoint(run_dir):
        raise RunError(f"{run_dir}: stopped before its first checkpoint; nothing to resume (train again with --force)")


def has_checkpoint(run_dir: Path) -> bool:
    """Whether a run (or, for k-fold runs, any of its folds) saved something to resume from."""
    from .checkpoints import read_progress

    return read_progress(run_dir) is not None or any(read_progress(fold) is not None or
                                                     (fold / "metrics.json").is_file()
                                                     for fold in run_dir.glob("fold*"))


def resume_hint(run_dir: Path, command: str = "train") -> str:
    """The one spelling of the resume command, for the interrupt message and the Interrupted error."""
    import shlex

    return f"Resume with: kit {command} --resume {shlex.quote(str(run_dir))}"


def _reopen_for_resume(config: Config, report: ValidationReport) -> Path:
    """Lock an interrupted run folder again after checking it was trained on this very data (_check_resumable
    has checked the rest)."""
    from .errors import RunError
    from .runs import lock_run_dir, read_json, remove_partial_files

    run_dir = Path(config.runs_dir) / config.name
    original = read_json(run_dir / "run.json").get("data_fingerprint")
    if original and original != report.fingerprint:
        raise RunError(f"{run_dir}: cannot resume: the data in {config.data} changed since the run started "
                       f"(fingerprint {report.fingerprint[:12]}…, the run has {original[:12]}…)")
    lock_run_dir(run_dir)
    remove_partial_files(run_dir)
    return run_dir


def _train_in(run_dir: Path, config: Config, comp, report, skipped, train_df, val_df, log,
              resume: bool = False) -> TrainResult:
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S")
    run_info = {**MARK, "config": config.__dict__, "data_fingerprint": report.fingerprint, "seed": config.seed,
                "started": started_at}
    if resume:
        from .runs import read_json

        earlier = read_json(run_dir / "run.json")
        run_info = {**run_info, "started": earlier.get("started", started_at),
                    "resumed": earlier.get("resumed", []) + [started_at]}
    write_json(run_dir / "run.json", run_info)
    write_json(run_dir / "config.json", config.__dict__)
    write_json(run_dir / "class_names.json", comp.class_names)
    if skipped:
        write_skipped(run_dir, [(p.file, p.row, p.message) for p in skipped])
        log(f"Skipping {len(skipped)} bad training image(s); listed in {run_dir / 'skipped.csv'}")
    if config.folds >= 2:
        from .folds import train_folds

        result = train_folds(config, comp, run_dir, log, resume)
    else:
        metrics = fit_skipping_broken(config, comp.class_names, train_df, val_df, run_dir, log, resume=resume)
        result = TrainResult(run_dir=run_dir, config=config, metrics=metrics,
                             interrupted=metrics.get("interrupted", False))
    from .runs import environment_info

    write_json(run_dir / "run.json", {**run_info, **environment_info(), "ended": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return result


def write_skipped(run_dir: Path, rows: list[tuple]) -> None:
    """Add (file, row, reason) rows to RUN/skipped.csv, the images training went on without."""
    path = run_dir / "skipped.csv"
    earlier = list(csv.reader(path.open(newline="", encoding="utf-8")))[1:] if path.is_file() else []
    with atomic_write(path, newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "row", "reason"])
        writer.writerows(earlier + [list(r) for r in rows])


def fit_skipping_broken(config: Config, class_names: list[str], train_df: pd.DataFrame, val_df: pd.DataFrame,
                        run_dir: Path, log=print, resume: bool = False) -> dict:
    """fit_run; with --on-bad-image skip, an image that breaks while training runs (deleted, overwritten) is left
    out and training goes on from the last checkpoint (or the start), the image listed in RUN/skipped.csv."""
    from .checkpoints import read_progress

    while True:
        try:
            return fit_run(config, class_names, train_df, val_df, run_dir, log, resume=resume)
        except ImageError as e:
            used = set(train_df["path"]) | set(val_df["path"])
            if config.on_bad_image != "skip" or e.path not in used:
                raise
            train_df, val_df = (df[df["path"] != e.path].reset_index(drop=True) for df in (train_df, val_df))
            write_skipped(run_dir, [(e.path, "", f"broke during training: {e}")])
            log(f"Skipping an image that broke during training: {e}")
            resume = read_progress(run_dir) is not None


def fit_run(config: Config, class_names: list[str], train_df: pd.DataFrame, val_df: pd.DataFrame, run_dir: Path,
            log=print, resume: bool = False) -> dict:
    """Train on train_df, keep the best model on val_df, and write model, history, metrics and reports.

    With resume, training continues from the run folder's last checkpoint (see kit/checkpoints.py).
    """
    from .quiet import keras

    from .transfer import is_transfer

    from .accelerate import configure_devices, device_description, make_strategy
    from .pipeline import cache_bytes, disk_cache, make_dataset

    strategy = make_strategy(config.strategy)
    configure_devices(config)
    replicas = strategy.num_replicas_in_sync
    batch_size = config.batch_size * replicas  # --batch-size is per replica
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        from .quiet import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    index = {name: i for i, name in enumerate(class_names)}
    common = dict(image_size=config.image_size, channels=config.channels, batch_size=batch_size)
    # One fixed random order of the training files, whatever the seed: the shuffle buffer mixes classes even
    # when it holds less than the whole set, and an on-disk cache of that order serves every run.
    train_df = train_df.sample(frac=1.0, random_state=0).reset_index(drop=True)
    train_labels, val_labels = train_df["label"].map(index), val_df["label"].map(index)
    steps_per_epoch = -(-len(train_df) // batch_size)
    decoded_bytes = cache_bytes(len(train_df) + len(val_df), config.image_size, config.channels)
    train_cache = val_cache = True  # in memory
    if config.cache_dir or decoded_bytes > config.cache_memory_gb * 2**30:
        train_cache, val_cache = (disk_cache(df["path"], config.image_size, config.channels, config.cache_dir, name)
                                  for df, name in ((train_df, "train"), (val_df, "val")))
        log(f"Caching the decoded images ({decoded_bytes / 2**30:.1f} GB) on disk in {Path(train_cache).parent}")

    def train_stream(first_epoch: int, last_epoch: int, skip: int = 0):
        """Training batches for epochs first_epoch..last_epoch-1, skipping `skip` batches already trained."""
        if config.sampling == "balanced":
            from .pipeline import make_balanced_dataset

            return make_balanced_dataset(train_df["path"], train_labels, seed=config.seed, augment=config.augment,
                                         skip_batches=first_epoch * steps_per_epoch + skip, **common)
        from .pipeline import make_training_stream

        return make_training_stream(train_df["path"], train_labels, seed=config.seed, augment=config.augment,
                                    epochs=last_epoch, first_epoch=first_epoch, skip_batches=skip, cache=train_cache,
                                    **common)

    counts = train_labels.value_counts().sort_index()
    if len(counts) <= 30:
        log("Class counts (train): " + ", ".join(f"{class_names[i]}: {n}" for i, n in counts.items()))
    else:  # thousands of classes: a summary, not a line of thousands
        log(f"Class counts (train): {len(counts)} classes, {counts.min()} to {counts.max()} images each (median "
            f"{int(counts.median())})")
    class_weight = None
    if config.class_weight == "balanced":  # n / (classes × count): each class weighs the same in the loss
        class_weight = {int(i): len(train_labels) / (len(class_names) * n) for i, n in counts.items()}
    val_ds = make_dataset(val_df["path"], val_labels, cache=val_cache, **common)
    log(f"Training {config.model} on {len(train_df)} images ({len(val_df)} for validation), "
        f"{config.image_size}x{config.image_size}x{config.channels}, {len(class_names)} classes"
        + (f", {replicas} replicas ({type(strategy).__name__})" if replicas > 1 else "")
        + f" on {device_description()} → {run_dir}")

    started = time.time()
    started_at = time.strftime("%Y-%m-%d %H:%M:%S")
    state: dict = {}
    # Keras' progress goes where kit's does (stderr: stdout keeps only results); none with --quiet.
    verbose = 0 if getattr(log, "quiet", False) else 1 if sys.stderr.isatty() else 2
    fit = dict(validation_data=val_ds, verbose=verbose, class_weight=class_weight, steps_per_epoch=steps_per_epoch,
               shuffle=False)  # the stream is already shuffled, per epoch, from the seed
    extra: dict = {}
    with stop_on_first_interrupt(state), images_named_on_failure([*train_df["path"], *val_df["path"]]), \
            redirect_stdout(sys.stderr):
        if is_transfer(config.model):
            from .transfer import build_transfer_model

            from .checkpoints import read_progress

            with strategy.scope():
                tm = build_transfer_model(config.model, config.image_size, config.channels, len(class_names),
                                          weights=config.weights, backbone_file=config.backbone_file,
                                          trusted=(config.trust_model,), head=config.head)
            progress = Progress(read_progress(run_dir) if resume else None)
            if resume:
                log(f"Resuming at epoch {progress.epoch + 1} ({progress.phase.replace('_', '-')} phase), "
                    f"batch {progress.step + 1}")
            callbacks = _callbacks(run_dir, config, state, tm.model, val_ds, val_labels.to_numpy(), progress,
                                   checkpoints=is_chief())
            extra = _fit_transfer(tm, config, strategy, train_df, train_labels, train_stream, val_ds, common,
                                  steps_per_epoch, callbacks, state, fit, log, train_cache,
                                  run_dir if resume else None)
        else:
            from .checkpoints import restore_checkpoint
            from .models import build_model, make_optimizer

            with strategy.scope():
                model = build_model(config.model, config.image_size, config.channels, len(class_names))
                if replicas > 1:  # batch statistics over the global batch: every replica keeps the same moving
                    for layer in model.layers:  # statistics (Keras updates each replica's copy from its own shard)
                        if isinstance(layer, keras.layers.BatchNormalization):
                            layer.synchronized = True
                model.compile(optimizer=make_optimizer(config.optimizer, config.learning_rate,
                                                       config.epochs * steps_per_epoch),
                              loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                              jit_compile=config.jit_compile)
                progress = Progress(restore_checkpoint(run_dir, model) if resume else None)
            if resume:
                log(f"Resuming at epoch {progress.epoch + 1}, batch {progress.step + 1} of {steps_per_epoch}")
            callbacks = _callbacks(run_dir, config, state, model, val_ds, val_labels.to_numpy(), progress,
                                   checkpoints=is_chief())
            _fit_from(model, progress, config.epochs, steps_per_epoch, train_stream, callbacks, fit)
    epochs_run = len(callbacks[0].progress.rows)
    seconds = time.time() - started
    if callbacks[0].progress.diverged_epoch:
        from .errors import TrainingDiverged

        raise TrainingDiverged(f"{run_dir}: the training loss became NaN or infinite in epoch "
                               f"{callbacks[0].progress.diverged_epoch} (learning rate {config.learning_rate:g}, "
                               f"optimizer {config.optimizer}); nothing from that epoch on was kept. Try a lower "
                               "--learning-rate (e.g. a tenth) or --optimizer adamw")
    if not (run_dir / "model.keras").exists():
        if state.get("interrupted"):
            from .errors import Interrupted

            raise Interrupted(f"{run_dir}: interrupted before the first epoch ended")  # train() says how to resume
        raise DataError(f"{run_dir}: training stopped before the first epoch ended; nothing to keep")
    if not is_chief():
        return {"interrupted": bool(state.get("interrupted")), "epochs_run": epochs_run, "worker": True}
    write_manifest(run_dir)

    from .predict import predict_validation
    from .reports import write_reports

    with images_named_on_failure(val_df["path"]):
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


def _worker_dir() -> Path:
    """Non-chief workers write their copy somewhere harmless (KIT_WORKER_DIR, else a temporary folder)."""
    import os
    import tempfile

    if os.environ.get("KIT_WORKER_DIR"):
        path = Path(os.environ["KIT_WORKER_DIR"])
        path.mkdir(parents=True, exist_ok=True)
        return path
    return Path(tempfile.mkdtemp(prefix="kit-worker-"))


def _fit_from(model, progress: Progress, epochs: int, steps: int, train_stream, callbacks, fit: dict) -> None:
    """fit() from where `progress` stands up to `epochs`; a part-trained epoch is finished by its own fit() call."""
    if progress.step and progress.epoch < epochs:
        epoch = progress.epoch
        model.fit(train_stream(epoch, epoch + 1, progress.step), initial_epoch=epoch, epochs=epoch + 1,
                  callbacks=callbacks, **{**fit, "steps_per_epoch": steps - progress.step})
    if progress.epoch < epochs and not progress.stopped:
        model.fit(train_stream(progress.epoch, epochs), initial_epoch=progress.epoch, epochs=epochs,
                  callbacks=callbacks, **fit)


def _fit_transfer(tm, config: Config, strategy, train_df, train_labels, train_stream, val_ds, common: dict,
                  steps_per_epoch: int, callbacks, state: dict, fit: dict, log, train_cache=True,
                  resume_from: Path | None = None) -> dict:
    """Phase 1: the head on a frozen backbone (on cached features by default); phase 2: fine-tune the top.

    Both phases checkpoint like kit's own CNNs. progress.phase says which model a checkpoint holds (the head, or
    the whole model with its top unfrozen), so a run resumed from `resume_from` restores it and goes on.
    """
    from .checkpoints import restore_checkpoint
    from .models import make_optimizer
    from .pipeline import augment_batches, make_array_stream, make_dataset
    from .transfer import extract_features, unfreeze_top

    loss, metrics = "sparse_categorical_crossentropy", ["accuracy"]
    progress = callbacks[0].progress
    if config.epochs and progress.phase == "frozen":
        frozen = tm.head if config.feature_cache else tm.model
        with strategy.scope():
            frozen.compile(optimizer=make_optimizer(config.optimizer, config.learning_rate,
                                                    config.epochs * steps_per_epoch),
                           loss=loss, metrics=metrics, jit_compile=config.jit_compile and frozen is tm.model)
        if resume_from:
            restore_checkpoint(resume_from, frozen)
        if progress.epoch < config.epochs and config.feature_cache:
            t0 = time.time()
            views = config.feature_views if config.augment != "none" else 1
            plain = make_dataset(train_df["path"], train_labels, cache=train_cache, **common)  # decoded once
            # view 0 is the plain image; further views are augmented copies (--feature-views N).
            xs, ys = zip(*[extract_features(tm.features, augment_batches(plain, config.augment, config.seed + v)
                                            if v else plain) for v in range(views)])
            x, y = np.concatenate(xs), np.concatenate(ys)
            val_x, val_y = extract_features(tm.features, val_ds)
            log(f"Frozen phase: features of {len(train_df)} images × {views} view(s) computed in "
                f"{time.time() - t0:.0f} s")
            batch_size = common["batch_size"]

            def feature_stream(first_epoch: int, last_epoch: int, skip: int = 0):
                return make_array_stream(x, y, batch_size=batch_size, seed=config.seed, epochs=last_epoch,
                                         first_epoch=first_epoch, skip_batches=skip)

            val_features = make_array_stream(val_x, val_y, batch_size=batch_size, seed=config.seed, epochs=1)
            _fit_from(tm.head, progress, config.epochs, -(-len(x) // batch_size), feature_stream, callbacks,
                      {**fit, "validation_data": val_features, "steps_per_epoch": -(-len(x) // batch_size)})
        elif progress.epoch < config.epochs:
            _fit_from(tm.model, progress, config.epochs, steps_per_epoch, train_stream, callbacks, fit)
        progress.frozen_best = float(progress.best)
    if config.fine_tune_epochs and not state.get("interrupted"):
        progress.stopped = False  # early stopping ends the frozen phase, not the fine-tuning
        opened = unfreeze_top(tm.backbone, config.fine_tune_layers)
        log(f"Fine-tuning the top {opened} layers of the backbone (BatchNorm frozen) for {config.fine_tune_epochs} "
            f"epoch(s) at learning rate {config.learning_rate / 10:g}")
        with strategy.scope():  # a changed `trainable` needs a fresh compile to take effect
            tm.model.compile(optimizer=make_optimizer("adamw", config.learning_rate / 10,
                                                     config.fine_tune_epochs * steps_per_epoch),
                             loss=loss, metrics=metrics, jit_compile=config.jit_compile)
        if progress.phase == "fine_tune":  # resumed inside the fine-tuning
            restore_checkpoint(resume_from, tm.model)
        else:
            progress.phase, progress.epoch, progress.step = "fine_tune", config.epochs, 0
        _fit_from(tm.model, progress, config.epochs + config.fine_tune_epochs, steps_per_epoch, train_stream,
                  callbacks, fit)
    best = progress.frozen_best if progress.frozen_best is not None else progress.best
    return {"frozen_val_accuracy": round(float(best), 6)}
