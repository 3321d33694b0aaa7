"""The tutorials kit grew from, as published: each a set of config values plus the figure it reported."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True)
class Recipe:
    dataset: str
    published: str
    settings: dict


RECIPES: dict[str, Recipe] = {
    "mnist-dense": Recipe("mnist", "94.4% test accuracy", dict(
        model="mlp", optimizer="sgd", learning_rate=0.2, batch_size=1024, epochs=50, augment="none",
        image_size=28, validation_split=0.2, seed=0)),
    "fashion-simple-cnn": Recipe("fashion_mnist", "~91-92% (AV leaderboard baseline)", dict(
        model="simple_cnn", optimizer="adam", learning_rate=1e-3, batch_size=32, epochs=10, augment="none",
        image_size=28, validation_split=0.2)),
    "fashion-lenet": Recipe("fashion_mnist", "test accuracy (not stated as one figure)", dict(
        model="lenet", optimizer="sgd", learning_rate=0.04, batch_size=20, epochs=15, augment="none",
        image_size=28, validation_split=0.2, metric="log_loss")),  # it kept the epoch of best validation loss
    "cifar10-cnn": Recipe("cifar10", "75.45% test accuracy", dict(
        model="cifar_cnn", optimizer="adam", learning_rate=1e-4, batch_size=32, epochs=100, augment="shift-vflip",
        image_size=32, validation_split=0.2)),
    "flowers-mobilenet": Recipe("flowers", "~75% validation accuracy", dict(
        model="mobilenet_v2", weights="imagenet", head="flatten", fine_tune_epochs=0, optimizer="adam",
        learning_rate=1e-3, batch_size=32, epochs=10, augment="none", image_size=224, validation_split=0.2)),
}


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise ConfigError(f"--recipe {name}: unknown; choose one of {', '.join(RECIPES)}") from None
