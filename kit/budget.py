"""--time-budget: the whole command — training, the validation predictions, the submission and the reports —
ends within a wall-clock budget. With the default --model (auto), the model is chosen first: baseline when enough
of its epochs fit, else the lighter `small` (plan_for_budget). The first epoch is timed (its steady second half:
the first batches pay for decoding and tracing), then as many further epochs are planned as fit in what is left
after a reserve for the work after training, and the learning-rate schedule is stretched to end exactly at the
last planned step (kit.fit._first_epoch_then_plan); should the epochs slow down after that, DeadlineGuard stops
training before it overruns. A k-fold run gives each fold an equal share of the time left
(Budget.for_fold); a backbone's fine-tuning is planned the same way after its frozen phase.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from .models import AUTO, DEFAULT_MODEL, build_model
from .quiet import keras

AFTER_TRAINING_SECONDS = 5.0  # the best model loaded, reports, the submission, exit (kit run on 12,000 PNGs: 3 s)
LIGHTER_MODEL = "small"
# Fewer baseline epochs than this in the budget, and `small` scores about as much or more in the same time
# (held-out accuracy, `kit run DATA --time-budget T [--model M]`, 2 cores, 2026-11-30): on 12,000 Fashion-MNIST
# PNGs baseline reached 87.7% validation in 2 epochs (22 s) against small's 88.4% in 8 (20 s), while 6 baseline
# epochs (87 s budget) scored 90.6% against small's 89.0% (12 epochs) to 89.5% (24); on 10,000 CIFAR-10 JPEGs
# baseline's 4 epochs (60 s) scored 55.5% against small's 61.2% (14 epochs), and its 6 (120 s) 59.8% against
# small's 60.5% (40 epochs). Where the crossover lies depends on the set; 6 keeps both sides of both.
MIN_DEFAULT_EPOCHS = 6
FIRST_EPOCH_EXTRA_SECONDS = 3.0  # tracing the training and validation steps, decoding into the cache


@dataclass(frozen=True)
class Budget:
    deadline: float  # time.time() by which the command must have ended
    predict_images: int  # images predicted after training: the validation split, and the test set for kit run
    after_seconds: float = AFTER_TRAINING_SECONDS  # the rest of the work after training

    def epochs(self, timer: "EpochTimer", cap: int) -> int:
        """1 (the epoch timed) + the epochs that fit before the deadline, after the reserve; at most cap."""
        left = self.deadline - time.time() - self.reserve(timer.seconds_per_prediction)
        return max(1, min(cap, 1 + math.floor(left / max(timer.later_epoch_seconds, 1e-6))))

    def reserve(self, seconds_per_prediction: float) -> float:
        """Seconds kept for the work after training: the predictions (at the pace given, with a margin) and the
        rest. The one reserve: for choosing the model, the fine-tuning and the epochs, and for DeadlineGuard."""
        return 1.2 * seconds_per_prediction * self.predict_images + self.after_seconds

    def for_fold(self, fold: int, folds: int, validation_images: int) -> "Budget":
        """A k-fold run's budget (predict_images: its test images) as fold `fold` sees it: an equal share of
        what is left, reserving its validation predictions and an equal share of the work after the last fold
        (every fold model predicts the test set); what a fold leaves unused goes to the folds after it, and the
        last fold reserves all of that work."""
        left = folds - fold
        return Budget(time.time() + (self.deadline - time.time()) / left,
                      validation_images + math.ceil(folds * self.predict_images / left), self.after_seconds / left)


def plan_for_budget(budget: Budget, model: str, image_size: int, channels: int, batch_size: int, train_images: int,
                    validation_images: int) -> tuple[str, float]:
    """(the model, about how many of its epochs fit in what is left of the budget): `model` itself, or for --model
    auto DEFAULT_MODEL when at least MIN_DEFAULT_EPOCHS of its epochs fit, else LIGHTER_MODEL."""
    def fit(name: str) -> float:
        return epochs_that_fit(budget, name, image_size, channels, batch_size, train_images, validation_images)

    if model != AUTO:
        return model, fit(model)
    default = fit(DEFAULT_MODEL)
    return (DEFAULT_MODEL, default) if default >= MIN_DEFAULT_EPOCHS else (LIGHTER_MODEL, fit(LIGHTER_MODEL))


def epochs_that_fit(budget: Budget, model_name: str, image_size: int, channels: int, batch_size: int,
                    train_images: int, validation_images: int) -> float:
    """About how many epochs of model_name fit in what is left of the budget. An epoch's cost is estimated from one
    batch run eagerly (a fraction of a second; the training step costs about what the eager forward pass does,
    measured on 28- and 96-px inputs); the first epoch's tracing and the predictions after training are kept."""
    batch = _batch_seconds(model_name, image_size, channels, batch_size)
    batches = -(-train_images // batch_size)
    epoch = batch * (batches + validation_images / batch_size / 3)  # predictions: forward passes only
    left = budget.deadline - time.time() - budget.reserve(batch / 3 / batch_size) - FIRST_EPOCH_EXTRA_SECONDS
    return max(0.0, left / epoch)


def _batch_seconds(model_name: str, image_size: int, channels: int, batch_size: int) -> float:
    """The fastest of three eager training-mode forward passes of one batch through a throwaway model."""
    model = build_model(model_name, image_size, channels, 10)
    images = np.zeros((batch_size, image_size, image_size, channels), np.uint8)
    model(images, training=True)  # the first call builds and allocates
    times = []
    for _ in range(3):
        started = time.perf_counter()
        model(images, training=True)
        times.append(time.perf_counter() - started)
    return min(times)


class EpochTimer(keras.callbacks.Callback):
    """Times one epoch: its training batches after the first half (decoding and tracing done) and its
    validation."""

    def __init__(self, validation_images: int):
        super().__init__()
        self.validation_images = validation_images
        self.times: list[float] = []
        self.validation_seconds = 0.0

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter())

    def on_test_begin(self, logs=None):
        self.validation_started = time.perf_counter()

    def on_test_end(self, logs=None):
        self.validation_seconds = time.perf_counter() - self.validation_started

    @property
    def later_epoch_seconds(self) -> float:
        """What a later epoch should cost: the steady batches' pace over all batches, plus the validation."""
        half = len(self.times) // 2
        steady = (self.times[-1] - self.times[half]) / max(1, len(self.times) - 1 - half) if len(self.times) > 1 \
            else 0.0
        return steady * len(self.times) + self.validation_seconds

    @property
    def seconds_per_prediction(self) -> float:
        return self.validation_seconds / max(1, self.validation_images)


class DeadlineGuard(keras.callbacks.Callback):
    """Stops after an epoch when the next would end more than half an epoch past the planned end of training
    (training_deadline): epochs that slow down after the plan was made would otherwise carry the run past its
    budget (a 94-epoch plan made at 6.5 s an epoch ended at 8.4 s an epoch, 64 s late, on this project's 2-core
    machine). The best epoch so far is the model; the schedule's last epochs, at its smallest rates, are what is
    given up. end: the epoch the plan ends at."""

    def __init__(self, training_deadline: float, end: int, progress, log, clock=time.time):
        super().__init__()
        self.training_deadline, self.end, self.progress, self.log, self.clock = training_deadline, end, progress, \
            log, clock

    def on_train_begin(self, logs=None):
        self.last = self.clock()

    def on_epoch_end(self, epoch, logs=None):
        now = self.clock()
        pace, self.last = now - self.last, now
        if epoch + 1 < self.end and not self.model.stop_training and now + pace / 2 > self.training_deadline:
            self.model.stop_training = self.progress.stopped = True
            self.log(f"Time budget: stopping after epoch {epoch + 1} of {self.end}: the epochs slowed to {pace:.1f} "
                     "s, and the next would end past the time planned for training")


def stretch_schedule(optimizer, total_steps: int) -> None:
    """Make a warm-up + cosine schedule (kit.models.make_optimizer's adamw) end at total_steps; constant rates
    have nothing to stretch. The change takes effect when the training step is traced again."""
    schedule = getattr(optimizer, "_learning_rate", None)  # Keras keeps the schedule object here
    if isinstance(schedule, keras.optimizers.schedules.CosineDecay):
        schedule.decay_steps = max(1, total_steps - schedule.warmup_steps)


# A backbone's image sizes under --time-budget, largest first (288: kit.transfer.photo_size of a 224-px backbone).
BACKBONE_SIZES = (288, 256, 224, 192, 160, 128, 96)
# The frozen phase may take this much of what is left (a margin for the estimate's error); fine-tuning gets what it
# leaves, when an epoch fits. The image size comes first: State Farm's layout at 128 px (half the budget kept for
# fine-tuning) scored log loss 0.987, at 224 px 0.870, in 3 minutes (red team, 2026-12-03); and fine-tuning rarely
# beat the head (kit.training.FINE_TUNE_FROM_PER_CLASS).
FROZEN_SHARE = 0.85
DECODE_MARGIN = 1.2  # reading and resizing the photos, beside the backbone's forward passes
# The closed-form head (kit.transfer.fit_linear_head: 4 logistic regressions) costs about this many seconds per
# training image × feature × class: 208 s for 8,000 CIFAR-10 images × 1,280 features × 10 classes, 25 s for 816
# flower photos × 1,280 × 17 (2 shared cores, 2026-12-03).
HEAD_SECONDS_PER_UNIT = 2e-6


def backbone_size_for_budget(budget: Budget, config, largest: int, train_images: int, validation_images: int,
                             views: int = 1, classes: int = 2) -> tuple[int, float]:
    """(image size, seconds of the frozen phase at it) for a backbone run with --time-budget: the largest of
    BACKBONE_SIZES up to `largest` whose frozen phase — the backbone's features of every training view and
    validation image, the closed-form head, and the reserve for the predictions — fits in FROZEN_SHARE of what is
    left, else the smallest if it fits at all, else (0, its seconds): no backbone fits. One batch is timed at
    `largest`; the smaller sizes are estimated by their pixels (a convolution's cost), and the size chosen is
    timed again when it is not the one timed."""
    sizes = [s for s in BACKBONE_SIZES if s <= largest] or [largest]
    if largest not in sizes:
        sizes.insert(0, largest)
    timed = {largest: _feature_seconds_per_image(config, largest)}

    def frozen_seconds(size: int) -> float:
        per_image, features = timed.get(size) or (timed[largest][0] * (size / largest) ** 2, timed[largest][1])
        passes = views * train_images + validation_images
        head = HEAD_SECONDS_PER_UNIT * views * train_images * features * max(2, classes)
        return per_image * passes * DECODE_MARGIN + head + budget.reserve(per_image) + FIRST_EPOCH_EXTRA_SECONDS

    left = budget.deadline - time.time()
    fitting = [s for s in sizes if frozen_seconds(s) <= FROZEN_SHARE * left]
    size = fitting[0] if fitting else sizes[-1]
    if size not in timed:
        timed[size] = _feature_seconds_per_image(config, size)
    seconds = frozen_seconds(size)
    return (size if seconds <= 0.9 * (budget.deadline - time.time()) else 0), seconds


def _feature_seconds_per_image(config, size: int, batch_size: int = 16) -> tuple[float, int]:
    """The fastest of two forward passes of one batch through the run's frozen backbone, per image (built
    without its ImageNet weights when it is a keras.applications one: the arithmetic is the same), and how many
    features it gives each image."""
    from .transfer import build_transfer_model, feature_function

    weights = "imagenet" if config.model == "backbone_file" else "none"
    tm = build_transfer_model(config.model, size, 3, 2, weights=weights, backbone_file=config.backbone_file,
                              trusted=(config.trust_model,))
    images = np.zeros((batch_size, size, size, 3), np.uint8)
    run = feature_function(tm.features)  # as kit.transfer.extract_features runs it
    run(images)  # the first call traces, builds and allocates
    times = []
    for _ in range(2):
        started = time.perf_counter()
        run(images)
        times.append(time.perf_counter() - started)
    return min(times) / batch_size, int(tm.features.output_shape[-1])
