"""Fit one model on one split: a plan (device strategy, batch size, streams, validation set, class weights) is
trained from scratch or in two transfer phases, the best epoch kept, and the result — metrics and validation
predictions — returned and written to the run folder. kit.training (one run) and kit.folds (k of them) sit on it.

TensorFlow is imported at the top: nothing reaches this module before training starts.
"""

from __future__ import annotations

import functools
import sys
import time
from contextlib import redirect_stdout
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .accelerate import configure_devices, device_description, is_chief, make_strategy, policy_name, precision
from .answers import encode_labels, tag_separator_of
from .budget import Budget, DeadlineGuard, EpochTimer, stretch_schedule
from .callbacks import Checkpointer, Interrupt, Progress, Watched, make_callbacks, record_epoch
from .config import Config
from .errors import DataError, ImageError, Interrupted, TrainingDiverged
from .metrics import lower_is_better
from .models import build_model, make_optimizer
from .pipeline import (
    augment_batches,
    cache_bytes,
    disk_cache,
    make_array_stream,
    make_balanced_dataset,
    make_dataset,
    make_training_stream,
    mirror_axis,
    mirrored_batches,
    training_set,
)
from .predict import evaluate_validation
from .quiet import keras
from .quiet import tensorflow as tf
from .reports import write_reports
from .runs import METRICS_FILE, MODEL_FILE, write_json, write_manifest, write_run_settings, write_skipped
from .transfer import build_transfer_model, extract_features, fit_linear_head, is_transfer, unfreeze_top
from .validation import images_named_on_failure


@dataclass
class FitResult:
    metrics: dict
    val_predictions: pd.DataFrame | None  # None on workers that do not write the run folder

    @property
    def interrupted(self) -> bool:
        return bool(self.metrics.get("interrupted"))


@dataclass
class Plan:
    """Everything a fit needs, decided once before it starts."""

    config: Config
    class_names: list[str]
    train_df: pd.DataFrame
    val_df: pd.DataFrame
    run_dir: Path
    strategy: object
    batch_size: int  # global: --batch-size per replica × replicas
    steps: int  # per epoch
    train_labels: np.ndarray  # class indices, or a 0/1 row per image for tags
    val_labels: np.ndarray
    val_ds: object
    train_cache: bool | str
    class_weight: dict | None
    verbose: int
    budget: Budget | None = None  # --time-budget: the deadline and what is predicted after training

    @property
    def multi_label(self) -> bool:
        return self.train_labels.ndim == 2

    @property
    def loss(self) -> dict:
        """Softmax cross-entropy over classes, or one binary cross-entropy per tag (accuracy means little there:
        the competition's metric is computed per epoch instead, kit.callbacks.epoch_score)."""
        if self.multi_label:
            return {"loss": "binary_crossentropy", "metrics": []}
        return {"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]}

    @property
    def image_args(self) -> dict:
        return dict(image_size=self.config.image_size, channels=self.config.channels, batch_size=self.batch_size)

    def train_stream(self, first_epoch: int, last_epoch: int, skip: int = 0):
        """Training batches for epochs first_epoch..last_epoch-1, skipping `skip` batches already trained."""
        c, paths = self.config, self.train_df["path"]
        if c.sampling == "balanced":
            return make_balanced_dataset(paths, self.train_labels, seed=c.seed, augment=c.augment,
                                         skip_batches=first_epoch * self.steps + skip, **self.image_args)
        return make_training_stream(paths, self.train_labels, seed=c.seed, augment=c.augment, epochs=last_epoch,
                                    first_epoch=first_epoch, skip_batches=skip, decoded=self.decoded_train,
                                    **self.image_args)

    @functools.cached_property
    def decoded_train(self):
        """The training images decoded once for every stream of this fit (kit.pipeline.training_set)."""
        return training_set(self.train_df["path"], self.train_labels, self.config.image_size, self.config.channels,
                            self.config.seed, self.train_cache, self.batch_size)

    def fit_args(self) -> dict:
        return dict(validation_data=self.val_ds, verbose=self.verbose, class_weight=self.class_weight,
                    steps_per_epoch=self.steps, shuffle=False)  # the stream is already shuffled, per epoch


def fit_skipping_broken(config: Config, class_names: list[str], train_df: pd.DataFrame, val_df: pd.DataFrame,
                        run_dir: Path, log=print, resume: bool = False, budget: Budget | None = None) -> FitResult:
    """fit_run; with --on-bad-image skip, an image that breaks while training runs (deleted, overwritten) is left
    out and training goes on from the last checkpoint (or the start), the image listed in RUN/skipped.csv."""
    while True:
        try:
            return fit_run(config, class_names, train_df, val_df, run_dir, log, resume=resume, budget=budget)
        except ImageError as e:
            used = set(train_df["path"]) | set(val_df["path"])
            if config.on_bad_image != "skip" or e.path not in used:
                raise
            train_df, val_df = (df[df["path"] != e.path].reset_index(drop=True) for df in (train_df, val_df))
            write_skipped(run_dir, [(e.path, "", f"broke during training: {e}")])
            log(f"Skipping an image that broke during training: {e}")
            resume = Checkpointer(run_dir).exists()


def fit_run(config: Config, class_names: list[str], train_df: pd.DataFrame, val_df: pd.DataFrame, run_dir: Path,
            log=print, resume: bool = False, budget: Budget | None = None) -> FitResult:
    """Train on train_df, keep the best model on val_df, and write model, history, metrics and reports.

    With resume, training continues from the run folder's last checkpoint (see kit/checkpoints.py).
    """
    plan = make_plan(config, class_names, train_df, val_df, run_dir, log, budget)
    checkpointer = Checkpointer(run_dir, enabled=is_chief())
    progress, interrupt = checkpointer.progress() if resume else Progress(), Interrupt()
    started, started_at = time.time(), time.strftime("%Y-%m-%d %H:%M:%S")
    with precision(config.mixed_precision, config.model), interrupt.catching(), \
            images_named_on_failure([*train_df["path"], *val_df["path"]]), \
            redirect_stdout(sys.stderr):  # Keras' progress goes where kit's does: stderr
        if is_transfer(config.model):
            extra = fit_transfer(plan, progress, interrupt, checkpointer, log, resume)
        else:
            fit_scratch(plan, progress, interrupt, checkpointer, log, resume)
            extra = {}
    seconds = round(time.time() - started, 1)  # training and its validation, not the predictions after it
    _check_ended(plan, progress, interrupt)
    if not is_chief():
        return FitResult({"interrupted": interrupt.requested, "epochs_run": len(progress.rows), "worker": True}, None)
    write_manifest(run_dir)
    with images_named_on_failure(val_df["path"]):
        val_pred, scores = evaluate_validation(run_dir, val_df, class_names, config)
    metrics = {**scores, "epochs_run": len(progress.rows), "best_epoch": progress.best_epoch,
               "train_seconds": seconds, "num_train": len(train_df),
               "num_validation": len(val_df), "interrupted": interrupt.requested, "started": started_at,
               "majority_rate": _majority_rate(val_df, plan),
               "model": config.model, **extra}
    write_json(run_dir / METRICS_FILE, metrics)
    write_reports(run_dir)
    return FitResult(metrics, val_pred)


def _majority_rate(val_df: pd.DataFrame, plan: Plan) -> float | None:
    """The validation accuracy of always answering the most common class (None for tags): what a model that
    learned nothing scores."""
    if plan.multi_label or not len(val_df):
        return None
    return round(float(val_df["label"].value_counts(normalize=True).iloc[0]), 6)


def _check_ended(plan: Plan, progress: Progress, interrupt: Interrupt) -> None:
    """Stop with one line when nothing worth keeping came out of the fit."""
    config, run_dir = plan.config, plan.run_dir
    if progress.diverged_epoch:
        raise TrainingDiverged(f"{run_dir}: the training loss became NaN or infinite in epoch "
                               f"{progress.diverged_epoch} (learning rate {config.learning_rate:g}, optimizer "
                               f"{config.optimizer}); nothing from that epoch on was kept. Try a lower "
                               "--learning-rate (e.g. a tenth) or --optimizer adamw")
    if not (run_dir / MODEL_FILE).exists():
        if interrupt.requested:
            raise Interrupted(f"{run_dir}: interrupted before the first epoch ended")  # train() says how to resume
        raise DataError(f"{run_dir}: training stopped before the first epoch ended; nothing to keep")


def make_plan(config: Config, class_names: list[str], train_df: pd.DataFrame, val_df: pd.DataFrame, run_dir: Path,
              log, budget: Budget | None = None) -> Plan:
    """Device strategy, seeds, the order of the training files, caches, class weights and the validation set."""
    strategy = make_strategy(config.strategy)
    configure_devices(config)
    replicas = strategy.num_replicas_in_sync
    batch_size = config.batch_size * replicas  # --batch-size is per replica
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    # One fixed random order of the training files, whatever the seed: the shuffle buffer mixes classes even
    # when it holds less than the whole set, and an on-disk cache of that order serves every run.
    train_df = train_df.sample(frac=1.0, random_state=0).reset_index(drop=True)
    separator = tag_separator_of(config)
    train_labels, val_labels = (encode_labels(df["label"], class_names, separator) for df in (train_df, val_df))
    train_cache, val_cache = _caches(config, train_df, val_df, log)
    counts = pd.Series(train_labels.sum(0) if separator else np.bincount(train_labels, minlength=len(class_names)))
    _log_counts(log, counts[counts > 0], class_names, "Tag" if separator else "Class")
    class_weight = None
    if config.class_weight == "balanced":  # n / (classes × count): each class weighs the same in the loss
        class_weight = {int(i): len(train_labels) / (len(class_names) * n) for i, n in counts.items() if n}
    image_args = dict(image_size=config.image_size, channels=config.channels, batch_size=batch_size)
    val_ds = make_dataset(val_df["path"], val_labels, cache=val_cache, **image_args)
    log(f"Training {config.model} on {len(train_df)} images ({len(val_df)} for validation), "
        f"{config.image_size}x{config.image_size}x{config.channels}, {len(class_names)} classes"
        + (f", {replicas} replicas ({type(strategy).__name__})" if replicas > 1 else "")
        + f" on {device_description()}{_arithmetic(config)} → {run_dir}")
    # Keras' progress goes where kit's does (stderr: stdout keeps only results); none with --quiet.
    verbose = 0 if getattr(log, "quiet", False) else 1 if sys.stderr.isatty() else 2
    return Plan(config, class_names, train_df, val_df, run_dir, strategy, batch_size,
                -(-len(train_df) // batch_size), train_labels, val_labels, val_ds, train_cache, class_weight, verbose,
                budget)


def _arithmetic(config: Config) -> str:
    policy = policy_name(config.mixed_precision, config.model)
    return "" if policy == "float32" else f" ({policy.split('_')[1]} arithmetic)"


def _caches(config: Config, train_df: pd.DataFrame, val_df: pd.DataFrame, log) -> tuple:
    """In memory (True), or kit's disk cache (a file prefix) beyond --cache-memory-gb or with --cache-dir."""
    decoded_bytes = cache_bytes(len(train_df) + len(val_df), config.image_size, config.channels)
    if not config.cache_dir and decoded_bytes <= config.cache_memory_gb * 2**30:
        return True, True
    caches = tuple(disk_cache(df["path"], config.image_size, config.channels, config.cache_dir, name)
                   for df, name in ((train_df, "train"), (val_df, "val")))
    log(f"Caching the decoded images ({decoded_bytes / 2**30:.1f} GB) on disk in {Path(caches[0]).parent}")
    return caches


def _log_counts(log, counts: pd.Series, class_names: list[str], what: str) -> None:
    if len(counts) <= 30:
        log(f"{what} counts (train): " + ", ".join(f"{class_names[i]}: {int(n)}" for i, n in counts.items()))
    else:  # thousands of classes: a summary, not a line of thousands
        log(f"{what} counts (train): {len(counts)} {what.lower()}s, {int(counts.min())} to {int(counts.max())} "
            f"images each (median {int(counts.median())})")


def fit_scratch(plan: Plan, progress: Progress, interrupt: Interrupt, checkpointer: Checkpointer, log,
                resume: bool) -> None:
    """A model of kit's registry, trained from its first (or its checkpoint's) epoch to the last."""
    config = plan.config
    with plan.strategy.scope():
        model = build_model(config.model, config.image_size, config.channels, len(plan.class_names),
                            plan.multi_label)
        if plan.strategy.num_replicas_in_sync > 1:  # batch statistics over the global batch: every replica keeps
            for layer in model.layers:  # the same moving statistics (Keras updates each replica's copy alone)
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.synchronized = True
        # a budgeted run warms up for exactly one epoch: the epoch it times before it knows its length
        warmup = plan.steps if config.time_budget else 0
        model.compile(optimizer=make_optimizer(config.optimizer, config.learning_rate, config.epochs * plan.steps,
                                               warmup), **plan.loss, jit_compile=config.jit_compile)
        if resume:
            checkpointer.restore(model)
    if resume:
        log(f"Resuming at epoch {progress.epoch + 1}, batch {progress.step + 1} of {plan.steps}")
    callbacks = make_callbacks(progress, interrupt, _watched(plan, model, checkpointer, plan.val_ds))
    epochs = config.epochs
    if plan.budget and progress.epoch == 0 and progress.step == 0:
        epochs, callbacks = _first_epoch_then_plan(plan, model, progress, callbacks, log)
    fit_from(model, progress, epochs, plan.steps, plan.train_stream, callbacks, plan.fit_args())


def _first_epoch_then_plan(plan: Plan, model, progress: Progress, callbacks: list, log,
                           phase: str = "epochs") -> tuple[int, list]:
    """--time-budget: train and time a phase's first epoch, then decide how many of its epochs fit (recorded in
    config.json, so a resumed run trains the same number) and stretch the schedule to end with the last of them.
    phase: the setting that holds the phase's length, "epochs" (from scratch) or "fine_tune_epochs" (after the
    frozen phase). Returns the epoch the phase ends at, and the callbacks for its later epochs (with a DeadlineGuard:
    the plan is made once, and epochs may slow down after it)."""
    config = plan.config
    start, cap = (0, config.epochs) if phase == "epochs" else (frozen_epochs(config), config.fine_tune_epochs)
    timer = EpochTimer(len(plan.val_df))
    fit_from(model, progress, start + 1, plan.steps, plan.train_stream, [*callbacks, timer], plan.fit_args())
    epochs = plan.budget.epochs(timer, cap=cap)
    training_deadline = plan.budget.deadline - plan.budget.reserve(timer.seconds_per_prediction)
    guard = DeadlineGuard(training_deadline, start + epochs, progress, log)
    stretch_schedule(model.optimizer, epochs * plan.steps)
    model.train_function = None  # traced again with the stretched schedule
    write_run_settings(plan.run_dir, replace(config, **{phase: epochs}), plan.class_names)
    log(f"Time budget: {epochs} {'fine-tuning ' if start else ''}epoch(s) in all (about "
        f"{timer.later_epoch_seconds:.1f} s each after the first, {max(0.0, plan.budget.deadline - time.time()):.0f} "
        "s left)")
    return start + epochs, [*callbacks, guard]


def _fine_tuning_fits(plan: Plan, frozen_seconds: float, log) -> bool:
    """--time-budget: whether one fine-tuning epoch fits in what is left, judged by the frozen phase's pace (its
    forward passes over every view and the validation images; a fine-tuning step costs about three: on cats vs
    dogs at 192 px, 2.3 with the JPEGs decoded in the frozen phase). When it does not, the converged head is the
    model and config.json records no fine-tuning. Without a budget it says how long fine-tuning will take."""
    if plan.budget is None:
        return True
    config = plan.config
    per_image, epoch = _fine_tuning_pace(plan, frozen_seconds)
    left = plan.budget.deadline - time.time() - plan.budget.reserve(per_image)
    if left >= epoch:
        return True
    write_run_settings(plan.run_dir, replace(config, fine_tune_epochs=0), plan.class_names)
    log(f"Time budget: no fine-tuning (an epoch would take about {epoch:.0f} s, {max(0.0, left):.0f} s left); the "
        "head fitted on the frozen backbone is the model")
    return False


def _fine_tuning_pace(plan: Plan, frozen_seconds: float) -> tuple[float, float]:
    """(seconds per forward pass of one image, seconds per fine-tuning epoch) by the frozen phase's pace."""
    per_image = frozen_seconds / max(1, feature_views(plan.config) * len(plan.train_df) + len(plan.val_df))
    return per_image, per_image * (3 * len(plan.train_df) + len(plan.val_df))


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _watched(plan: Plan, target, checkpointer: Checkpointer, val_inputs) -> Watched:
    """What the callbacks watch; val_inputs: what the model being fit takes for the validation split (images, or
    the frozen backbone's features)."""
    return Watched(plan.run_dir, plan.config, target, (val_inputs, plan.val_labels), checkpointer, plan.class_names)


def fit_from(model, progress: Progress, epochs: int, steps: int, train_stream, callbacks, fit: dict) -> None:
    """fit() from where `progress` stands up to `epochs`; a part-trained epoch is finished by its own fit() call."""
    if progress.step and progress.epoch < epochs:
        epoch = progress.epoch
        model.fit(train_stream(epoch, epoch + 1, progress.step), initial_epoch=epoch, epochs=epoch + 1,
                  callbacks=callbacks, **{**fit, "steps_per_epoch": steps - progress.step})
    if progress.epoch < epochs and not progress.stopped:
        model.fit(train_stream(progress.epoch, epochs), initial_epoch=progress.epoch, epochs=epochs,
                  callbacks=callbacks, **fit)


def fit_transfer(plan: Plan, progress: Progress, interrupt: Interrupt, checkpointer: Checkpointer, log,
                 resume: bool) -> dict:
    """Phase 1: the head on a frozen backbone (on cached features by default); phase 2: fine-tune the top.

    Both phases checkpoint like kit's own CNNs. progress.phase says which model a checkpoint holds (the head, or
    the whole model with its top unfrozen), so a resumed run restores it and goes on.
    """
    config = plan.config
    with plan.strategy.scope():
        tm = build_transfer_model(config.model, config.image_size, config.channels, len(plan.class_names),
                                  weights=config.weights, backbone_file=config.backbone_file,
                                  trusted=(config.trust_model,), head=config.head, multi_label=plan.multi_label)
    if resume:
        log(f"Resuming at epoch {progress.epoch + 1} ({progress.phase.replace('_', '-')} phase), "
            f"batch {progress.step + 1}")

    def callbacks(val_inputs):
        return make_callbacks(progress, interrupt, _watched(plan, tm.model, checkpointer, val_inputs))

    frozen_seconds = 0.0
    if config.epochs and progress.phase == "frozen":
        started = time.perf_counter()
        _fit_frozen(plan, tm, progress, callbacks, checkpointer if resume else None, log)
        progress.frozen_best, frozen_seconds = float(progress.best), time.perf_counter() - started
    if config.fine_tune_epochs and not interrupt.requested and _fine_tuning_fits(plan, frozen_seconds, log):
        _fine_tune(plan, tm, progress, callbacks(plan.val_ds), checkpointer if resume else None, log,
                   _fine_tuning_pace(plan, frozen_seconds)[1])
        if progress.best_epoch < progress.epoch:  # the epochs shown ran, but an earlier one is the model
            kept = "the head's" if progress.best_epoch <= frozen_epochs(config) else "a fine-tuning epoch's"
            log(f"Kept epoch {progress.best_epoch} ({kept}): fine-tuning epoch {progress.epoch} scored under it")
    best = progress.frozen_best if progress.frozen_best is not None else progress.best
    return {"frozen_val_score": round(-float(best) if lower_is_better(config.metric) else float(best), 6)}


def _fit_frozen(plan: Plan, tm, progress: Progress, callbacks, restore_from: Checkpointer | None, log) -> None:
    """The head on the frozen backbone: on cached features (computed once per view), or a plain frozen fit."""
    config = plan.config
    frozen = tm.head if config.feature_cache else tm.model
    with plan.strategy.scope():
        frozen.compile(optimizer=make_optimizer(config.optimizer, config.learning_rate, config.epochs * plan.steps),
                       **plan.loss, jit_compile=config.jit_compile and frozen is tm.model)
    if restore_from:
        restore_from.restore(frozen)
    if progress.epoch >= frozen_epochs(config):
        return
    if not config.feature_cache:
        fit_from(tm.model, progress, config.epochs, plan.steps, plan.train_stream, callbacks(plan.val_ds),
                 plan.fit_args())
        return
    x, y, val_x, val_y = _cached_features(plan, tm, log)
    val_features = make_array_stream(val_x, val_y, batch_size=plan.batch_size, seed=config.seed, epochs=1)
    if closed_form_head(config):
        # the callbacks score val_x in its own order (val_features is shuffled: AUC against plan.val_labels was noise)
        _fit_head_to_convergence(plan, tm, callbacks(val_x), (x, y, val_x, val_y), log)
        return
    steps = -(-len(x) // plan.batch_size)

    def feature_stream(first_epoch: int, last_epoch: int, skip: int = 0):
        return make_array_stream(x, y, batch_size=plan.batch_size, seed=config.seed, epochs=last_epoch,
                                 first_epoch=first_epoch, skip_batches=skip)

    fit_from(tm.head, progress, config.epochs, steps, feature_stream, callbacks(val_x),
             {**plan.fit_args(), "validation_data": val_features, "steps_per_epoch": steps})


def _cached_features(plan: Plan, tm, log) -> tuple:
    """The frozen backbone's features of every training image (view 0 the image, view 1 its mirror when the
    augmentation mirrors, further views augmented) and of the validation images."""
    config = plan.config
    t0 = time.time()
    views = feature_views(config)
    plain = make_dataset(plan.train_df["path"], plan.train_labels, cache=plan.train_cache, **plan.image_args)
    shown = plan.verbose > 0
    xs, ys = zip(*[extract_features(tm.features, _view(plain, config, v), shown) for v in range(views)])
    val_x, val_y = extract_features(tm.features, plan.val_ds, shown)
    log(f"Frozen phase: features of {len(plan.train_df)} images × {views} view(s) computed in "
        f"{time.time() - t0:.0f} s")
    return np.concatenate(xs), np.concatenate(ys), val_x, val_y


def _view(plain, config: Config, v: int):
    """View v of the training batches: the images, their mirror images, then seeded augmentations."""
    axis = mirror_axis(config.augment)
    if v == 0:
        return plain
    if v == 1 and axis:  # a mirrored photo is as real as the photo: the view that pays most (docs/photos.md)
        return mirrored_batches(plain, axis)
    return augment_batches(plain, config.augment, config.seed + v)


def feature_views(config: Config) -> int:
    """How many views of each training image the frozen phase computes features of: --feature-views, by default
    the image and its mirror image when the augmentation mirrors (photos), else the image alone."""
    if config.augment == "none":
        return 1
    return config.feature_views or (2 if mirror_axis(config.augment) else 1)


def closed_form_head(config: Config) -> bool:
    """Whether the frozen phase is kit's pooled head fitted to convergence on cached features
    (_fit_head_to_convergence), rather than --epochs of training."""
    return config.feature_cache and config.head == "pool"


def frozen_epochs(config: Config) -> int:
    """The frozen phase's length in epochs: one when fitted in closed form, else --epochs."""
    return 1 if closed_form_head(config) else config.epochs


def _fit_head_to_convergence(plan: Plan, tm, callbacks: list, arrays: tuple, log) -> None:
    """The frozen phase as one epoch: the head's dense layer fitted by logistic regression on the cached
    features (kit.transfer.fit_linear_head), then recorded, kept and checkpointed like any epoch."""
    x, y, val_x, val_y = arrays
    started = time.perf_counter()
    kernel, bias, strength = fit_linear_head(x, y, val_x, val_y, len(plan.class_names),
                                             balanced=plan.config.class_weight == "balanced")
    tm.head.get_layer("predictions").set_weights([kernel, bias])
    with plan.strategy.scope():  # its (unused) state: checkpoints save what fit() would
        tm.head.optimizer.build(tm.head.trainable_variables)
    batch = {"batch_size": max(plan.batch_size, 256), "verbose": 0, "return_dict": True}
    logs = {**tm.head.evaluate(x, y, **batch),
            **{f"val_{k}": v for k, v in tm.head.evaluate(val_x, val_y, **batch).items()}}
    record_epoch(callbacks, tm.head, 0, logs)
    log(f"Frozen phase: the head fitted to convergence (logistic regression, L-BFGS, C={strength:g}) in "
        f"{time.perf_counter() - started:.1f} s")


def _fine_tune(plan: Plan, tm, progress: Progress, callbacks, restore_from: Checkpointer | None, log,
               epoch_seconds: float = 0.0) -> None:
    """The top layers unfrozen (BatchNorm stays frozen), at a tenth of the learning rate. epoch_seconds: an
    estimate of one epoch (0 when unknown, as in a resumed run), said when there is no budget to plan it."""
    config = plan.config
    progress.stopped = False  # early stopping ends the frozen phase, not the fine-tuning
    opened = unfreeze_top(tm.backbone, config.fine_tune_layers)
    about = f", about {_duration(epoch_seconds * config.fine_tune_epochs)} at the frozen phase's pace " \
        "(--time-budget caps a run)" if epoch_seconds and not plan.budget else ""
    log(f"Fine-tuning the top {opened} layers of the backbone (BatchNorm frozen) for {config.fine_tune_epochs} "
        f"epoch(s) at learning rate {config.learning_rate / 10:g}{about}")
    warmup = plan.steps if config.time_budget else 0  # budgeted: the one epoch timed before the plan
    with plan.strategy.scope():  # a changed `trainable` needs a fresh compile to take effect
        tm.model.compile(optimizer=make_optimizer("adamw", config.learning_rate / 10,
                                                 config.fine_tune_epochs * plan.steps, warmup),
                         **plan.loss, jit_compile=config.jit_compile)
    end = frozen_epochs(config) + config.fine_tune_epochs
    if progress.phase == "fine_tune":  # resumed inside the fine-tuning
        restore_from.restore(tm.model)
    else:
        progress.phase, progress.epoch, progress.step = "fine_tune", frozen_epochs(config), 0
        if plan.budget:
            end, callbacks = _first_epoch_then_plan(plan, tm.model, progress, callbacks, log, "fine_tune_epochs")
    fit_from(tm.model, progress, end, plan.steps, plan.train_stream, callbacks, plan.fit_args())
