"""Where a run stands (Progress), Ctrl-C (Interrupt), checkpoints saved and restored (Checkpointer), and the two
Keras callbacks that keep them: one per batch (position, divergence, interrupt, periodic checkpoints), one per
epoch (history, best model, early stopping, the epoch's checkpoint)."""

from __future__ import annotations

import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .checkpoints import read_progress, restore_checkpoint, save_checkpoint
from .answers import metric_context
from .config import Config
from .errors import ConfigError
from .metrics import evaluate, lower_is_better
from .quiet import keras
from .runs import MODEL_FILE, TENSORBOARD_DIR, save_model, write_history


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
        self.stopped = False  # early stopping, an interrupt or divergence: no further fit() calls
        self.partial_epoch = False  # stopped inside an epoch: its end counts for nothing
        self.diverged_epoch = None  # the epoch (1-based) whose training loss became NaN or infinite

    def record(self) -> dict:
        return {"epoch": self.epoch, "step": self.step, "best": self.best, "best_epoch": self.best_epoch,
                "history": self.rows, "phase": self.phase, "frozen_best": self.frozen_best}


class Interrupt:
    """Ctrl-C during training: the first finishes the current batch and stops cleanly, the second stops at once."""

    def __init__(self):
        self.requested = False

    @contextmanager
    def catching(self):
        def handler(signum, frame):
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True
            print("\nStopping after this batch (Ctrl-C again to abort at once)…", file=sys.stderr, flush=True)

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


class Checkpointer:
    """Save and restore a run's checkpoints (kit.checkpoints), in one place; `enabled` is False on the workers
    that do not write the run folder."""

    def __init__(self, run_dir: Path, enabled: bool = True):
        self.run_dir, self.enabled = run_dir, enabled

    def save(self, model, progress: Progress) -> None:
        if self.enabled:
            save_checkpoint(self.run_dir, model, progress.record())

    def exists(self) -> bool:
        return read_progress(self.run_dir) is not None

    def progress(self) -> Progress:
        """Where the last checkpoint stands (a fresh Progress when there is none)."""
        return Progress(read_progress(self.run_dir))

    def restore(self, model) -> None:
        restore_checkpoint(self.run_dir, model)


@dataclass
class Watched:
    """What the callbacks of one run watch and write."""

    run_dir: Path
    config: Config
    target: object  # the full model to save (the head may be what is fit)
    validation: tuple  # (what the fitted model takes for the validation split, its labels)
    checkpointer: Checkpointer
    class_names: list[str]


def epoch_score(watched: Watched, logs: dict, model) -> float:
    """The score that picks the best epoch: the competition's metric on the validation split, higher is better
    (minus a loss). Accuracy and log loss are Keras' own validation numbers; any other metric predicts the split
    with the model being fit and is added to the logs (val_auc, val_map@5, val_f2)."""
    metric = watched.config.metric
    if metric == "accuracy" and "val_accuracy" in logs:
        return logs["val_accuracy"]
    if metric == "log_loss":  # Keras' validation loss is the log loss (per tag for multi-label)
        return -logs.get("val_loss", np.inf)
    inputs, labels = watched.validation
    probs = np.asarray(model.predict(inputs, verbose=0), dtype=np.float64)
    value, _ = evaluate(metric, labels, probs, **metric_context(watched.config, watched.class_names))
    logs[f"val_{metric}"] = value
    return -value if lower_is_better(metric) else value


class BatchWatch(keras.callbacks.Callback):
    """After each batch: the position in the epoch, a diverged loss (stop), Ctrl-C (stop, checkpoint), and the
    checkpoint every config.checkpoint_every batches."""

    def __init__(self, progress: Progress, interrupt: Interrupt, watched: Watched):
        super().__init__()
        self.progress, self.interrupt, self.watched = progress, interrupt, watched
        self.first_step = progress.step  # a resumed epoch starts part-way through

    def on_epoch_begin(self, epoch, logs=None):
        if epoch != self.progress.epoch:
            self.progress.epoch, self.progress.step, self.first_step = epoch, 0, 0

    def on_epoch_end(self, epoch, logs=None):
        self.first_step = 0

    def on_train_batch_end(self, batch, logs=None):
        p = self.progress
        p.step = self.first_step + batch + 1
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):  # diverged: stop, keep nothing of this epoch
            self.model.stop_training = p.stopped = p.partial_epoch = True
            p.diverged_epoch = p.epoch + 1
            return
        last = batch + 1 == self.params.get("steps")
        every = self.watched.config.checkpoint_every
        if self.interrupt.requested and not last:  # on the last batch, let the epoch finish and count
            self.model.stop_training = p.stopped = p.partial_epoch = True
            self.watched.checkpointer.save(self.model, p)
        elif every and p.step % every == 0 and not last:  # the epoch's end saves its own
            self.watched.checkpointer.save(self.model, p)


# FINE_TUNE_STOPS_WHEN_WORSE: fine-tuning a backbone stops at its first epoch that scores worse than the best so far
# (the head fitted on the frozen backbone included; equal goes on), unless --early-stopping sets a patience. On the
# 17-class flower competition (813 photos) the three default epochs scored 0.908, 0.908, 0.903 validation accuracy
# against the head's 0.937 (RESULTS.md, 2026-12-03): each further epoch cost about 70 s and never recovered.


class EpochRecord(keras.callbacks.Callback):
    """After each whole epoch: its history row, the best model (saved atomically), early stopping, and the
    epoch's checkpoint."""

    def __init__(self, progress: Progress, interrupt: Interrupt, watched: Watched):
        super().__init__()
        self.progress, self.interrupt, self.watched = progress, interrupt, watched

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        p, w = self.progress, self.watched
        if p.partial_epoch:  # stopped inside the epoch: its checkpoint is saved, nothing else counts
            return
        logs = dict(logs or {})
        score = epoch_score(w, logs, self.model)
        lr = self.model.optimizer.learning_rate
        p.rows.append({"epoch": epoch + 1, **{k: float(v) for k, v in logs.items() if k != "learning_rate"},
                       "learning_rate": float(lr.numpy() if hasattr(lr, "numpy") else lr),
                       "seconds": round(time.perf_counter() - self.started, 2)})  # training + validation
        write_history(w.run_dir, p.rows)
        if score > p.best:  # every worker saves (collective ops need all); only the chief's is the run's
            p.best, p.best_epoch = float(score), epoch + 1
            save_model(w.target, w.run_dir / MODEL_FILE)
        p.epoch, p.step = epoch + 1, 0
        patience = w.config.early_stopping
        worse = p.phase == "fine_tune" and not patience and score < p.best  # see FINE_TUNE_STOPS_WHEN_WORSE
        if self.interrupt.requested or worse or (patience and p.epoch - p.best_epoch >= patience):
            self.model.stop_training = p.stopped = True
        w.checkpointer.save(self.model, p)


def record_epoch(callbacks: list, model, epoch: int, logs: dict) -> None:
    """An epoch trained outside fit() (the head fitted in closed form): recorded, kept and checkpointed by the
    run's EpochRecord like any other."""
    record = next(c for c in callbacks if isinstance(c, EpochRecord))
    record.set_model(model)
    record.on_epoch_begin(epoch)
    record.on_epoch_end(epoch, logs)


def make_callbacks(progress: Progress, interrupt: Interrupt, watched: Watched) -> list:
    callbacks = [BatchWatch(progress, interrupt, watched), EpochRecord(progress, interrupt, watched)]
    if watched.config.tensorboard:
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            raise ConfigError("--tensorboard needs the tensorboard package: pip install tensorboard")
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(watched.run_dir / TENSORBOARD_DIR)))
    return callbacks
