"""Model registry: each factory returns a keras.Model that takes raw uint8 pixels (scaling is inside)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .quiet import keras

layers = keras.layers

from .errors import ConfigError


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[[tuple[int, int, int], int], keras.Model]
    optimizer: str  # "adamw" (with warm-up + cosine decay), "adam" or "sgd" (constant rate, as published)
    learning_rate: float
    summary: str


def _inputs(input_shape):
    inputs = keras.Input(shape=input_shape, dtype="uint8", name="image")
    return inputs, layers.Rescaling(1.0 / 255, name="rescale")(inputs)


def _output(x, num_classes):
    return output_layer(x, num_classes)


def _conv_bn(x, filters, name, kernel=3, strides=1):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    # momentum 0.9 (not Keras' 0.99): small competition sets give few steps, and slow moving
    # statistics make validation accuracy lag far behind training accuracy for many epochs.
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _stem(x, size: int):
    """Strided conv-BN-ReLU layers that bring inputs over 64 px down to at most 64."""
    stem = 0
    while size > 64:
        x = _conv_bn(x, 32, f"stem{stem}", strides=2)
        size, stem = (size + 1) // 2, stem + 1
    return x


def baseline(input_shape, num_classes):
    """kit's default: a small conv-BN-ReLU network that pools early, then a dense head on a ≤8×8 map.

    Pooling right after the first convolution keeps the cost per image close to the tutorials' CNN
    (BatchNorm is slow on CPUs), while BN, the wider middle and AdamW with warm-up + cosine decay
    make it learn faster and further (see README, "Choosing the default model"). Inputs larger than
    64 px are first brought down by strided convolutions.
    """
    inputs, x = _inputs(input_shape)
    x = _stem(x, input_shape[0])
    size = x.shape[1]
    x = _conv_bn(x, 32, "block0")
    x = layers.MaxPooling2D(name="pool0")(x)
    x = _conv_bn(x, 64, "block1a")
    x = _conv_bn(x, 64, "block1b")
    x = layers.MaxPooling2D(name="pool1")(x)
    x = _conv_bn(x, 128, "block2")
    size //= 4
    while size > 8:
        x = layers.MaxPooling2D(name=f"pool{size}")(x)
        size //= 2
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(0.3, name="dropout1")(x)
    x = layers.Dense(128, activation="relu", name="dense")(x)
    x = layers.Dropout(0.3, name="dropout2")(x)
    return keras.Model(inputs, _output(x, num_classes), name="baseline")


def small(input_shape, num_classes):
    """A quarter of baseline's cost per image: keras-io's MNIST convnet (Conv32-pool-Conv64-pool, no BatchNorm,
    a softmax on the flattened map) with baseline's strided stem for inputs over 64 px and its AdamW schedule.

    What `--time-budget` trains when fewer than a handful of baseline epochs fit (kit.budget.plan_for_budget): on
    12,000 Fashion-MNIST PNGs it reached 88.4% validation accuracy in 8 epochs (20 s) where baseline's 2 epochs
    (22 s) reached 87.7% (benchmarks/RESULTS.md, 2026-11-30).
    """
    inputs, x = _inputs(input_shape)
    x = _stem(x, input_shape[0])
    padding = "valid" if x.shape[1] >= 12 else "same"  # valid convolutions would shrink tiny inputs to nothing
    x = layers.Conv2D(32, 3, activation="relu", padding=padding, name="conv0")(x)
    x = layers.MaxPooling2D(name="pool0")(x)
    x = layers.Conv2D(64, 3, activation="relu", padding=padding, name="conv1")(x)
    x = layers.MaxPooling2D(name="pool1")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(0.3, name="dropout")(x)
    return keras.Model(inputs, _output(x, num_classes), name="small")


def mlp(input_shape, num_classes):
    """The dense MNIST tutorial: 784 → 15 ReLU → softmax."""
    inputs, x = _inputs(input_shape)
    x = layers.Flatten()(x)
    x = layers.Dense(15, activation="relu")(x)
    return keras.Model(inputs, _output(x, num_classes), name="mlp")


def simple_cnn(input_shape, num_classes):
    """The AV 'Identify the apparels' CNN: Conv32-Conv64-MaxPool-Dropout.25-Dense128-Dropout.5."""
    inputs, x = _inputs(input_shape)
    x = layers.Conv2D(32, 3, activation="relu")(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Dropout(0.25)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    return keras.Model(inputs, _output(x, num_classes), name="simple_cnn")


def lenet(input_shape, num_classes):
    """The LeNet-ish Fashion-MNIST tutorial: Conv6(5)-Pool-Conv10(5)-Pool-FC56-FC10."""
    inputs, x = _inputs(input_shape)
    x = layers.Conv2D(6, 5, activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(10, 5, activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(56, activation="relu")(x)
    return keras.Model(inputs, _output(x, num_classes), name="lenet")


def cifar_cnn(input_shape, num_classes):
    """The CIFAR-10 tutorial CNN: 2×Conv32, 2×Conv64, 2×Conv96 (same padding) with pools and dropout."""
    inputs, x = _inputs(input_shape)
    for filters in (32, 64, 96):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D()(x)
        x = layers.Dropout(0.25)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(256, activation="relu")(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    return keras.Model(inputs, _output(x, num_classes), name="cifar_cnn")


MODELS: dict[str, ModelSpec] = {
    "baseline": ModelSpec(baseline, "adamw", 3e-3, "conv-BN, early pooling, dense head (default)"),
    "small": ModelSpec(small, "adamw", 3e-3, "keras-io's MNIST convnet, a quarter of baseline's cost"),
    "mlp": ModelSpec(mlp, "sgd", 0.2, "dense MNIST tutorial: one hidden layer of 15"),
    "simple_cnn": ModelSpec(simple_cnn, "adam", 1e-3, "AV apparels tutorial CNN"),
    "lenet": ModelSpec(lenet, "sgd", 0.04, "LeNet-ish Fashion-MNIST tutorial"),
    "cifar_cnn": ModelSpec(cifar_cnn, "adam", 1e-4, "CIFAR-10 tutorial CNN"),
}


DEFAULT_MODEL = "baseline"
AUTO = "auto"  # --model's default: DEFAULT_MODEL, or with --time-budget what fits (kit.budget.plan_for_budget)


def get_model_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"--model {name}: unknown; choose one of {', '.join(MODELS)}") from None


def build_model(name: str, image_size: int, channels: int, num_classes: int, multi_label: bool = False
                ) -> keras.Model:
    """Build a registered model for square uint8 images of the given size and channel count. multi_label: one
    sigmoid per tag instead of the softmax over classes (the same layers before it)."""
    try:
        model = get_model_spec(name).build((image_size, image_size, channels), num_classes)
    except ValueError as e:  # a tutorial's unpadded convolutions and pools shrink small inputs to nothing
        if "would be zero or negative" not in str(e) and "Negative dimension" not in str(e):
            raise
        raise ConfigError(f"--model {name}: {image_size}-px images are too small for its layers; use a larger "
                          "--image-size (28 suits every model)") from None
    if not multi_label:
        return model
    features = model.get_layer("predictions").input
    return keras.Model(model.inputs, output_layer(features, num_classes, multi_label), name=model.name)


def output_layer(x, num_classes: int, multi_label: bool = False):
    """Softmax over classes, or a sigmoid per tag; float32 keeps probabilities exact under mixed precision."""
    return layers.Dense(num_classes, activation="sigmoid" if multi_label else "softmax", dtype="float32",
                        name="predictions")(x)


def make_optimizer(kind: str, learning_rate: float, total_steps: int, warmup_steps: int = 0):
    """AdamW gets a linear warm-up (10% of the steps, or warmup_steps) then cosine decay; the published recipes
    keep their constant rate."""
    if kind == "adamw":
        warmup = warmup_steps or max(1, total_steps // 10)
        schedule = keras.optimizers.schedules.CosineDecay(
            learning_rate / 30, decay_steps=max(1, total_steps - warmup), warmup_target=learning_rate,
            warmup_steps=warmup, alpha=0.01)
        return keras.optimizers.AdamW(schedule, weight_decay=1e-4)
    if kind == "adam":
        return keras.optimizers.Adam(learning_rate)
    if kind == "sgd":
        return keras.optimizers.SGD(learning_rate)
    raise ConfigError(f"--optimizer {kind}: expected adamw, adam or sgd")
