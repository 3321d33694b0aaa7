"""Is training input-bound? Epoch time of kit's `train` against `model.fit` on in-memory NumPy arrays.

Usage: python benchmarks/training.py DATA [--epochs 3] [--model baseline] [--batch-size 64]
Both sides train the same model (built and compiled by kit) on the same images with no augmentation; the
first epoch of each (tracing, and for kit the one-off decode) is reported apart from the later ones.
Time to 91% on Fashion-MNIST, kit's default against the AV recipe: benchmarks/recipes.py --target 0.91.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


class EpochTimer:
    def __init__(self):
        import keras

        timer = self

        class Callback(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                timer.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                timer.seconds.append(time.perf_counter() - timer.start)

        self.seconds: list[float] = []
        self.callback = Callback()


def kit_train_epochs(args) -> list[float]:
    """Seconds per epoch of kit.training.train, measured by a callback added to kit's own."""
    import kit.fit
    import kit.training
    from kit.config import Config

    timer = EpochTimer()
    original = kit.fit.make_callbacks
    kit.fit.make_callbacks = lambda *a, **k: original(*a, **k) + [timer.callback]
    with tempfile.TemporaryDirectory() as runs:
        config = Config(data=args.data, model=args.model, epochs=args.epochs, batch_size=args.batch_size,
                        augment="none", runs_dir=runs, name="bench").validate()
        kit.training.train(config, log=lambda *_: None)
    kit.fit.make_callbacks = original
    return timer.seconds


def numpy_fit_epochs(args) -> list[float]:
    """Seconds per epoch of model.fit on uint8 arrays already in memory (the same model and validation split)."""
    from kit.config import Config
    from kit.data import load_competition
    from kit.models import build_model, make_optimizer
    from kit.pipeline import load_images
    from kit.training import resolve_config, split_train_validation
    from kit.validation import validate

    comp = load_competition(args.data)
    config = resolve_config(Config(data=args.data, model=args.model, batch_size=args.batch_size), validate(comp))
    train, val = split_train_validation(comp, config)
    index = {c: i for i, c in enumerate(comp.class_names)}
    x = load_images(train["path"], config.image_size, config.channels)
    y = train["label"].map(index).to_numpy()
    validation = (load_images(val["path"], config.image_size, config.channels), val["label"].map(index).to_numpy())
    model = build_model(args.model, config.image_size, config.channels, len(comp.class_names))
    steps = -(-len(x) // args.batch_size)
    model.compile(optimizer=make_optimizer(config.optimizer, config.learning_rate, args.epochs * steps),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    timer = EpochTimer()
    model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, callbacks=[timer.callback], verbose=0,
              validation_data=validation)  # kit validates every epoch too
    return timer.seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--model", default="baseline")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    print(f"{args.data}: {args.model}, batch {args.batch_size}, {args.epochs} epochs, {os.cpu_count()} cores")
    kit_seconds = kit_train_epochs(args)
    fit_seconds = numpy_fit_epochs(args)
    print(f"{'':34}{'epoch 1 s':>10}{'later epochs s':>16}")
    for name, seconds in (("kit train (tf.data from files)", kit_seconds),
                          ("model.fit on NumPy arrays in memory", fit_seconds)):
        print(f"{name:34}{seconds[0]:>10.1f}{np.mean(seconds[1:]):>16.1f}")
    print(f"kit / in-memory, later epochs: {np.mean(kit_seconds[1:]) / np.mean(fit_seconds[1:]):.2f}x")


if __name__ == "__main__":
    main()
