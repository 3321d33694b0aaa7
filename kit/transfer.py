"""Transfer learning: Keras-applications backbones (or your own .keras file) with the right preprocessing inside,
a pooled head, a fast frozen phase on cached features, and safe fine-tuning of the top layers."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .quiet import keras

layers = keras.layers

from .progress import tqdm  # a widget in notebooks, a text bar elsewhere

from .errors import ConfigError, RunError
from .models import output_layer
from .runs import check_trusted, load_keras_file

# Caffe-style ImageNet means (B, G, R) that ResNet50's weights were trained with.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@dataclass(frozen=True)
class Backbone:
    constructor: str  # keras.applications attribute
    preprocessing: str  # "raw" (the model rescales itself), "tf" ([-1, 1]) or "caffe" (BGR, mean-subtracted)
    image_size: int
    extra: tuple = ()  # extra keyword arguments, as (name, value) pairs


BACKBONES: dict[str, Backbone] = {
    "mobilenet_v2": Backbone("MobileNetV2", "tf", 224),
    "mobilenet_v3_small": Backbone("MobileNetV3Small", "raw", 224, (("include_preprocessing", True),)),
    "mobilenet_v3_large": Backbone("MobileNetV3Large", "raw", 224, (("include_preprocessing", True),)),
    "efficientnet_b0": Backbone("EfficientNetB0", "raw", 224),
    "efficientnet_v2_b0": Backbone("EfficientNetV2B0", "raw", 224, (("include_preprocessing", True),)),
    "resnet50": Backbone("ResNet50", "caffe", 224),
    "convnext_tiny": Backbone("ConvNeXtTiny", "raw", 224, (("include_preprocessing", True),)),
}
BACKBONE_FILE = "backbone_file"  # config.model value when --backbone-file is used


def is_transfer(model_name: str) -> bool:
    return model_name in BACKBONES or model_name == BACKBONE_FILE


# Keras' ImageNet backbones learned from random crops of 8-100% of a photo resized to their input, so the objects
# they know fill more of the frame than in a whole photo shrunk to it; read larger, a photo shows them nearer the
# scale learned (Touvron et al. 2019, "Fixing the train-test resolution discrepancy": a ResNet-50 trained at 224
# px scored best tested at 288). On a 17-class competition of 500-px flower photos (benchmarks/flowers17.py) the
# shared EfficientNet-Lite0 scored 93.8% held-out at 224 px, 93.5% at 256 and 95.3% at 288 (validation log loss
# 0.281, 0.216, 0.199). The cost: (9/7)^2 = 1.65x the pixels.
PHOTO_SCALE = 9 / 7  # 224 -> 288


def default_backbone_size(model_name: str, backbone_file: str, median_side: int) -> int:
    """The image size of a transfer run without --image-size: the input side your backbone file fixes, else
    the photos' median short side within native..native × PHOTO_SCALE (down to a multiple of 32), and never
    below the backbone's native size."""
    fixed = input_side(backbone_file) if backbone_file else None
    if fixed:
        return fixed
    native = BACKBONES[model_name].image_size if model_name in BACKBONES else 224
    return max(native, min(median_side, photo_size(native)) // 32 * 32)


def photo_size(native: int) -> int:
    """The largest size kit reads photos at for a backbone of this native size (288 for 224)."""
    return round(native * PHOTO_SCALE) // 32 * 32


def input_side(path) -> int | None:
    """The square input side a .keras file's model fixes, read from its config.json (no code runs); None when it
    takes any size or the file does not say."""
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
        first = config["config"]["layers"][0]["config"]
        shape = first.get("batch_shape") or first.get("batch_input_shape")
        height, width = shape[1], shape[2]
    except (OSError, KeyError, IndexError, TypeError, ValueError, zipfile.BadZipFile):
        return None
    return height if height and height == width else None


def preprocessing_layers(kind: str, channels: int) -> list:
    """Standard Keras layers (no Lambda) that turn uint8 pixels into what a backbone expects."""
    stack = [layers.Rescaling(1.0, name="to_float")]  # casts uint8 → float32 without changing values
    if channels == 1:  # grayscale data, RGB backbone: repeat the channel (a fixed 1×1 convolution)
        stack.append(layers.Conv2D(3, 1, use_bias=False, trainable=False, name="gray_to_rgb",
                                   kernel_initializer=keras.initializers.Constant(np.ones((1, 1, 1, 3)))))
    if kind == "tf":
        stack.append(layers.Rescaling(1 / 127.5, offset=-1.0, name="scale_to_pm1"))
    elif kind == "caffe":
        swap = np.zeros((1, 1, 3, 3), np.float32)
        swap[0, 0, 2, 0] = swap[0, 0, 1, 1] = swap[0, 0, 0, 2] = 1.0  # RGB → BGR
        stack.append(layers.Conv2D(3, 1, trainable=False, name="rgb_to_bgr_minus_mean",
                                   kernel_initializer=keras.initializers.Constant(swap),
                                   bias_initializer=keras.initializers.Constant([-m for m in CAFFE_MEAN_BGR])))
    return stack


def _weights_error(name: str, error: Exception) -> RunError:
    text = str(error)
    url = re.search(r"https?://\S+?(?=['\"\s)]|$)", text)
    cache = Path(keras.config.keras_home() if hasattr(keras.config, "keras_home") else Path.home() / ".keras")
    if url:
        file_name = url.group(0).rstrip(".,:;").split("/")[-1]
        return RunError(f"ImageNet weights for {name}: {cache / 'models' / file_name} is not there and the download "
                        f"failed; put the file there (from {url.group(0).rstrip('.,')}) or use --weights none")
    return RunError(f"ImageNet weights for {name}: could not load ({text.splitlines()[0][:160]})")


def load_backbone(name: str, image_size: int, weights: str) -> tuple[keras.Model, str]:
    """A headless backbone and its preprocessing kind; weights: imagenet, none, or a weights file."""
    spec = BACKBONES.get(name)
    if spec is None:
        raise ConfigError(f"--model {name}: unknown backbone; choose one of {', '.join(BACKBONES)}")
    if weights not in ("imagenet", "none") and not Path(weights).is_file():
        raise ConfigError(f"--weights {weights}: not imagenet, none, or an existing weights file")
    constructor = getattr(keras.applications, spec.constructor)
    try:
        with warnings.catch_warnings():  # MobileNets warn that their 224-px weights load at other sizes: headless,
            warnings.filterwarnings("ignore", message="`input_shape` is undefined")  # that is what kit wants
            backbone = constructor(include_top=False, weights=None if weights == "none" else weights,
                                   input_shape=(image_size, image_size, 3), **dict(spec.extra))
    except (OSError, ValueError, Exception) as e:  # get_file raises many types when offline
        if weights == "imagenet":
            raise _weights_error(name, e) from None
        raise ConfigError(f"--weights {weights}: cannot load into {name} ({str(e).splitlines()[0][:160]})") from None
    return backbone, spec.preprocessing


def check_backbone_file(path, trusted=()) -> Path:
    """The file exists and its sha256 is among the trusted ones (checked before any run folder is made)."""

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--backbone-file {path}: no such file")
    check_trusted(path, trusted, "--backbone-file")
    return path


def load_backbone_file(path, trusted=()) -> keras.Model:
    """Your own feature extractor (.keras): raw RGB 0–255 in, a feature map or vector out.

    Loaded only when its sha256 was given with --trust-model, and always in Keras safe mode.
    """

    path = check_backbone_file(path, trusted)
    model = load_keras_file(path, "--backbone-file ")
    if len(model.output_shape) not in (2, 4):
        raise ConfigError(f"--backbone-file {path}: output shape {model.output_shape} is neither a feature map "
                          "(N, H, W, C) nor a vector (N, C)")
    return model


@dataclass
class TransferModel:
    model: keras.Model  # uint8 pixels → probabilities (saved and used for prediction)
    backbone: keras.Model
    features: keras.Model  # uint8 pixels → pooled feature vector (frozen backbone)
    head: keras.Model  # feature vector → probabilities (trained on cached features)


def build_transfer_model(name: str, image_size: int, channels: int, num_classes: int, weights: str = "imagenet",
                         backbone_file: str = "", dropout: float = 0.2, trusted=(), head: str = "pool",
                         multi_label: bool = False) -> TransferModel:
    """Preprocessing → backbone (always called with training=False) → global pooling → dropout + dense.

    head="flatten" is the flowers tutorial's head instead (Flatten + dense, no dropout), kept for its recipe:
    it has a weight per feature-map position, which is why kit's own head pools.
    """
    if name == BACKBONE_FILE:
        backbone, kind = load_backbone_file(backbone_file, trusted), "raw"
    else:
        backbone, kind = load_backbone(name, image_size, weights)
    backbone.trainable = False
    inputs = keras.Input((image_size, image_size, channels), dtype="uint8", name="image")
    x = inputs
    for layer in preprocessing_layers(kind, channels):
        x = layer(x)
    # training=False keeps BatchNorm in inference mode even after the top layers are unfrozen.
    x = backbone(x, training=False)
    if head == "flatten":  # the tutorial's head has no dropout
        x, dropout = layers.Flatten(name="flatten")(x), 0.0
    elif len(x.shape) == 4:
        x = layers.GlobalAveragePooling2D(name="pool")(x)
    features = keras.Model(inputs, x, name="features")
    head_in = keras.Input((x.shape[-1],), name="feature_vector")
    h = layers.Dropout(dropout, name="head_dropout")(head_in)
    h = output_layer(h, num_classes, multi_label)
    head = keras.Model(head_in, h, name="head")
    model = keras.Model(inputs, head(x), name=f"transfer_{name}")
    return TransferModel(model=model, backbone=backbone, features=features, head=head)


def leaf_layers(model) -> list:
    """Every non-container layer of a model, in order, looking inside nested models (your own .keras files often
    wrap the whole network in one inner model)."""
    leaves = []
    for layer in model.layers:
        inner = getattr(layer, "layers", None)
        leaves += leaf_layers(layer) if inner else [layer]
    return leaves


def unfreeze_top(backbone: keras.Model, count: int) -> int:
    """Make the top `count` weighted layers trainable; BatchNorm layers stay frozen. Returns how many."""
    backbone.trainable = True  # containers on; each leaf below decides for itself
    leaves = leaf_layers(backbone)
    for layer in leaves:
        layer.trainable = False
    opened = 0
    for layer in reversed([l for l in leaves if l.weights]):
        if opened >= count:
            break
        if not isinstance(layer, layers.BatchNormalization):
            layer.trainable = True
            opened += 1
    return opened


def feature_function(features: keras.Model):
    """The frozen part as one TensorFlow graph. Called eagerly, a Keras functional model keeps every layer's
    output alive until the call returns: EfficientNet-Lite0 on 32 images at 224 px held 2.6 GB more and took
    0.9 s where the graph, which frees each tensor once its last reader is done, took 1.07 GB in all and 0.5 s
    (benchmarks/RESULTS.md, 2026-12-03)."""
    import tensorflow as tf

    return tf.function(lambda images: features(images, training=False), reduce_retracing=True)


def extract_features(features: keras.Model, dataset, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Run the frozen part once over a labelled dataset: (feature vectors, labels); a progress bar on a terminal."""

    xs, ys = [], []
    batches = int(dataset.cardinality())
    run = feature_function(features)
    for images, labels in tqdm(dataset, total=batches if batches > 0 else None, desc="Backbone features",
                               unit="batch", leave=False, disable=not progress or None):
        xs.append(run(images).numpy())
        ys.append(labels.numpy())
    return np.concatenate(xs), np.concatenate(ys)


HEAD_STRENGTHS = (0.01, 0.1, 1.0, 10.0)  # scikit-learn's C (inverse L2 strength), chosen on validation


def fit_linear_head(x: np.ndarray, y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, num_classes: int,
                    balanced: bool = False) -> tuple[np.ndarray, np.ndarray, float]:
    """The head's dense layer fitted to convergence on cached features: multinomial logistic regression (L-BFGS;
    one per tag for multi-label) on standardised features, its strength the one of HEAD_STRENGTHS with the
    lowest validation log loss; returned as (kernel, bias) for the raw features, and the chosen C.

    Why not epochs of Adam: a fixed number of epochs on a small set (13 steps each) stops long before the head
    converges, and fine-tuning then starts from an under-trained head.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from .metrics import log_loss

    scaler = StandardScaler().fit(x)
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    xs, val_xs = (x - scaler.mean_) / scale, (val_x - scaler.mean_) / scale
    best = None
    for c in HEAD_STRENGTHS:
        kernel, bias = _logistic(xs, y, num_classes, c, balanced, LogisticRegression)
        logits = val_xs @ kernel + bias
        probs = 1 / (1 + np.exp(-logits)) if y.ndim == 2 else _softmax(logits)
        loss = log_loss(val_y.astype(int) if y.ndim == 1 else val_y, probs) if len(val_y) else 0.0
        if best is None or loss < best[0]:
            best = (loss, kernel, bias, c)
    _, kernel, bias, c = best
    # logits = ((x − mean) / scale) · K + b = x · (K / scale) + (b − (mean / scale) · K)
    return (kernel / scale[:, None]).astype(np.float32), (bias - (scaler.mean_ / scale) @ kernel).astype(
        np.float32), c


def _logistic(x: np.ndarray, y: np.ndarray, num_classes: int, c: float, balanced: bool, model) -> tuple:
    """(kernel, bias) of a softmax over num_classes (or a sigmoid per tag when y is a 0/1 matrix)."""
    weight = "balanced" if balanced else None
    if y.ndim == 2:  # tags: one binary regression each; a tag always or never present keeps a constant logit
        kernel, bias = np.zeros((x.shape[1], num_classes)), np.zeros(num_classes)
        for t in range(num_classes):
            share = y[:, t].mean()
            if 0 < share < 1:
                fitted = model(C=c, max_iter=2000, class_weight=weight).fit(x, y[:, t])
                kernel[:, t], bias[t] = fitted.coef_[0], fitted.intercept_[0]
            else:
                bias[t] = 10.0 if share else -10.0
        return kernel, bias
    fitted = model(C=c, max_iter=2000, class_weight=weight).fit(x, y)
    kernel, bias = np.zeros((x.shape[1], num_classes)), np.full(num_classes, -30.0)  # absent classes: ~0
    coef, intercept = fitted.coef_, fitted.intercept_
    if len(fitted.classes_) == 2:  # one logit w for classes (a, b): softmax of (−w/2, w/2) is the same model
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    kernel[:, fitted.classes_], bias[fitted.classes_] = coef.T, intercept
    return kernel, bias


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)
