"""What --model auto means for the data at hand: photos get a pretrained backbone when weights are within reach
(the user's settings file, the Keras cache, a download), everything else — and photos without weights — one of
kit's CNNs. The choice and its reason go into config.json (auto_reason) and one line of the run's output.

The decision reads the validation report, files and at most one socket; timing a backbone to fit a --time-budget
is kit.budget's (backbone_size_for_budget).
"""

from __future__ import annotations

import os
import socket
import threading
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import median

from .config import Config
from .errors import ConfigError
from .models import AUTO
from .runs import sha256_file
from .transfer import BACKBONE_FILE

# Images whose median short side is under this are kit's CNNs' (measured, docs/photos.md): MNIST and
# Fashion-MNIST (28 px, gray) and CIFAR-10 (32 px, colour), where a backbone's pixels cost more than they bring
# at equal wall time; above it a pretrained backbone wins from the first minute (flowers, cats vs dogs).
PHOTO_MIN_SIDE = 64

# keras.applications backbones whose ImageNet weights kit looks for in the Keras cache, in order of preference
# on a CPU (accuracy per second), each with the file keras.applications saves there (include_top=False).
CACHED_WEIGHTS = (
    ("efficientnet_b0", "efficientnetb0_notop.h5"),
    ("efficientnet_v2_b0", "efficientnetv2-b0_notop.h5"),
    ("mobilenet_v3_large", "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5"),
    ("mobilenet_v2", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"),
    ("convnext_tiny", "convnext_tiny_notop.h5"),
    ("resnet50", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    ("mobilenet_v3_small", "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"),
)
# On a GPU a backbone's forward passes cost little next to reading the photos, so the most accurate one in reach
# is preferred (ImageNet top-1 as Keras documents it: ConvNeXtTiny 81.3%, EfficientNetV2B0 78.7%, EfficientNetB0
# 77.1%); the order above is for a CPU. Not measured here (no GPU on kit's benchmark machine).
GPU_ORDER = ("convnext_tiny", "efficientnet_v2_b0", "efficientnet_b0")
DOWNLOADED = "efficientnet_b0"  # what keras.applications downloads when nothing is cached and the machine is online
DOWNLOADED_ON_GPU = "convnext_tiny"
WEIGHTS_HOST = ("storage.googleapis.com", 443)  # where keras.applications' weights come from
CONNECT_SECONDS = 2.0  # offline is decided this fast: no long hangs on a machine without internet
SETTINGS_KEYS = {"backbone_file", "trust_model"}


@dataclass(frozen=True)
class Weights:
    """Where a photo run's pretrained backbone comes from."""

    model: str  # a keras.applications backbone (kit.transfer.BACKBONES) or BACKBONE_FILE
    backbone_file: str = ""
    trust_model: str = ""
    source: str = ""  # for the reason line: "from ~/.config/kit/config.toml"


def settings_path() -> Path:
    """The user's settings file: $XDG_CONFIG_HOME/kit/config.toml (default ~/.config/kit/config.toml)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "kit" / "config.toml"


def keras_models_dir() -> Path:
    """Where keras.applications keeps downloaded weights: $KERAS_HOME/models, else ~/.keras/models (as Keras)."""
    home = os.environ.get("KERAS_HOME")
    if not home:
        base = Path.home() if os.access(Path.home(), os.W_OK) else Path("/tmp")
        home = str(base / ".keras")
    return Path(home) / "models"


def shown(path: Path) -> str:
    """A path as the user would type it: ~ for the home folder."""
    home = str(Path.home())
    text = str(path)
    return "~" + text[len(home):] if home != "/" and (text == home or text.startswith(home + "/")) else text


def read_settings(path: Path | None = None) -> dict:
    """The [auto] section of the user's settings file ({} when there is no file or no section); a file that
    cannot be read or parsed, or unknown keys, are an error naming the file."""
    path = path or settings_path()
    if not path.is_file():
        return {}
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: cannot parse ({str(e).splitlines()[0]})") from None
    auto = values.get("auto", {})
    if not isinstance(auto, dict):
        raise ConfigError(f"{path}: `auto` must be a section ([auto]) with backbone_file and trust_model")
    unknown = sorted(set(auto) - SETTINGS_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(unknown)} in [auto]; known: "
                          f"{', '.join(sorted(SETTINGS_KEYS))}")
    return auto


def settings_backbone(path: Path | None = None) -> Weights | None:
    """The backbone file the settings name, checked (exists, its sha256 trusted), or None when they name none."""
    path = path or settings_path()
    auto = read_settings(path)
    if not auto.get("backbone_file"):
        return None
    file = Path(os.path.expanduser(str(auto["backbone_file"])))
    file = file if file.is_absolute() else path.parent / file
    if not file.is_file():
        raise ConfigError(f"{path}: [auto] backbone_file {file}: no such file; fix the path, or remove the line "
                          "to let kit look elsewhere")
    actual = sha256_file(file)
    if actual != str(auto.get("trust_model", "")).strip().lower():  # a model file can run code: kit's own rule
        raise ConfigError(f"{path}: [auto] backbone_file {file} has sha256 {actual}, not the trust_model given; "
                          f"check where it came from, then set trust_model = \"{actual}\" in [auto]")
    return Weights(BACKBONE_FILE, str(file), actual, f"from {shown(path)}")


def cached_backbone(gpu: bool = False) -> Weights | None:
    """A keras.applications backbone whose ImageNet weights are already in the Keras cache (on a GPU, the first
    of GPU_ORDER that is there, else as on a CPU)."""
    folder = keras_models_dir()
    order = sorted(CACHED_WEIGHTS, key=lambda entry: GPU_ORDER.index(entry[0]) if gpu and entry[0] in GPU_ORDER
                   else len(GPU_ORDER))  # stable: the CPU order otherwise
    for name, file in order:
        if (folder / file).is_file():
            return Weights(name, source=f"ImageNet weights in {shown(folder)}")
    return None


def has_gpu() -> bool:
    """Whether TensorFlow sees a GPU (asked only when a photo run needs weights)."""
    from .quiet import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def online(timeout: float = CONNECT_SECONDS) -> bool:
    """Whether keras.applications' weights host answers within `timeout` seconds (the name lookup included);
    never with KIT_OFFLINE=1."""
    if os.environ.get("KIT_OFFLINE", "") not in ("", "0"):
        return False
    answered = []

    def connect():
        try:
            socket.create_connection(WEIGHTS_HOST, timeout=timeout).close()
            answered.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=connect, daemon=True)  # a name lookup ignores socket timeouts
    thread.start()
    thread.join(timeout)
    return bool(answered)


def weights_within_reach(gpu: bool | None = None) -> Weights | None:
    """The user's settings, else the Keras cache, else a download when online; None when none can be had. On a GPU
    (asked of TensorFlow unless given) the larger backbones come first."""
    found = settings_backbone()
    if found:
        return found
    gpu = has_gpu() if gpu is None else gpu
    found = cached_backbone(gpu)
    if found:
        return found
    if online():
        return Weights(DOWNLOADED_ON_GPU if gpu else DOWNLOADED,
                       source=f"ImageNet weights downloaded into {shown(keras_models_dir())}")
    return None


def median_dimensions(sizes) -> tuple[int, int]:
    """(width, height): the median of each over the images (a Counter of (w, h))."""
    widths = [w for (w, h), n in sizes.items() for _ in range(n)]
    heights = [h for (w, h), n in sizes.items() for _ in range(n)]
    return (int(median(widths)), int(median(heights))) if widths else (0, 0)


def describe_images(report) -> tuple[bool, str]:
    """(photos?, what the images are): photos when their median short side reaches PHOTO_MIN_SIDE."""
    width, height = median_dimensions(report.sizes)
    colour = "grayscale" if report.channels == 1 else "colour"
    photos = report.median_size >= PHOTO_MIN_SIDE
    kind = "photos" if photos else "small images"
    return photos, f"{kind} ({colour}, median {width}×{height})"


def missing_line() -> str:
    """What was missing and how to provide it, for the fallback line."""
    path = shown(settings_path())
    return (f"no pretrained weights within reach (no [auto] backbone_file in {path}, no ImageNet backbone in "
            f"{shown(keras_models_dir())}, no internet); for a backbone put [auto] backbone_file = "
            f"\"/path/to/backbone.keras\" and trust_model = \"<its sha256>\" in {path} (docs/photos.md)")


def choose_auto(config: Config, report) -> Config:
    """--model auto decided from the data: photos with weights within reach → that backbone (model, and the file
    and its hash for a backbone file); else the model stays auto (kit's CNNs decide later). auto_reason says why;
    a reason that does not end in a model name yet gets the CNN's name in kit.training.resolve_config."""
    if config.model != AUTO or config.backbone_file:
        return config
    photos, what = describe_images(report)
    if not photos:
        return replace(config, auto_reason=what)
    if config.weights != "imagenet":  # --weights none (or a file for a named backbone): not pretrained photos
        return replace(config, auto_reason=f"{what}, --weights {config.weights}")
    weights = weights_within_reach()
    if weights is None:
        return replace(config, auto_reason=f"{what}, but {missing_line()}")
    name = Path(weights.backbone_file).stem if weights.backbone_file else weights.model
    return replace(config, model=weights.model, backbone_file=weights.backbone_file,
                   trust_model=weights.trust_model or config.trust_model,
                   auto_reason=f"{what} → {name} ({weights.source})")
