"""One flat config for a run: defaults here, a TOML/YAML file may override them, CLI flags override both."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path

import tomllib

from .errors import ConfigError
from .metrics import check_metric

AUGMENT_LEVELS = ("auto", "none", "light", "strong", "shift-vflip")
# Each setting's allowed values, spelled once: Click's choices and Config.validate both read them.
CHOICES = {
    "augment": AUGMENT_LEVELS,
    "optimizer": ("", "adamw", "adam", "sgd"),
    "class_weight": ("none", "balanced"),
    "sampling": ("none", "balanced"),
    "on_bad_image": ("error", "skip"),
    "head": ("pool", "flatten"),
    "strategy": ("auto", "mirrored", "multiworker", "tpu", "none"),
    "mixed_precision": ("auto", "on", "off"),
    "channels": (0, 1, 3),
    "submission": ("auto", "label", "probability", "probabilities", "top-k", "tags"),
}
# Inclusive bounds of the numeric settings (validation_split and image_size have their own rules below).
RANGES = {
    "batch_size": (1, 1 << 16),
    "epochs": (1, 100_000),
    "learning_rate": (0.0, 1e6),
    "folds": (0, 1_000),
    "seed": (0, 2**32 - 1),
    "early_stopping": (0, 100_000),
    "cache_memory_gb": (0.0, 1e6),
    "checkpoint_every": (0, 1 << 31),
    "fine_tune_epochs": (-1, 100_000),
    "fine_tune_layers": (0, 100_000),
    "feature_views": (0, 64),
    "clip": (0.0, 0.1),
    "time_budget": (0.0, 1e7),
}
TYPE_CHECKS = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, float) and math.isfinite(v),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str) and "\0" not in v,
}
TYPE_WORDS = {"int": "a whole number", "float": "a finite number", "bool": "true or false", "str": "text"}


def parse_label_map(text: str) -> dict[str, str]:
    """--label-map cat=0,dog=1 → {"cat": "0", "dog": "1"}: what the submission writes for each class."""
    pairs = [item.split("=", 1) for item in text.split(",") if item.strip()] if text else []
    if any(len(p) != 2 or not p[0].strip() or not p[1].strip() for p in pairs):
        raise ConfigError(f"--label-map {text}: expected CLASS=VALUE pairs separated by commas, each value "
                          "non-empty, e.g. cat=0,dog=1")
    keys = [k.strip() for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"--label-map {text}: a class is given twice")
    mapping = {k.strip(): v.strip() for k, v in pairs}
    if len(set(mapping.values())) != len(mapping):
        raise ConfigError(f"--label-map {text}: two classes map to the same value; each class needs its own")
    return mapping


NAME_MATCH_SECONDS = 0.5  # per file name: a pattern that backtracks catastrophically is stopped, not waited for


def parse_name_pattern(text: str):
    """--label-from-name REGEX, compiled by the `regex` engine (which can be stopped mid-match): exactly one
    group, the class."""
    import regex

    try:
        compiled = regex.compile(text)
    except (regex.error, ValueError, OverflowError, RecursionError) as e:
        raise ConfigError(f"--label-from-name {text}: not a regular expression ({e})") from None
    if compiled.groups != 1:
        raise ConfigError(f"--label-from-name {text}: needs exactly one group, the class, e.g. '^([a-z]+)\\.'")
    return compiled


def class_in_name(pattern, text: str, name: str) -> str | None:
    """The class a file name holds by --label-from-name (None: the name does not match); a group that takes no
    part, or matches nothing, and a match that runs away are one line."""
    try:
        found = pattern.search(name, timeout=NAME_MATCH_SECONDS)
    except TimeoutError:
        raise ConfigError(f"--label-from-name {text}: matching '{name}' took over {NAME_MATCH_SECONDS} s (the pattern "
                          "backtracks without end); simplify it, e.g. '^([a-z]+)\\.'") from None
    if found is None:
        return None
    if not found.group(1):
        raise ConfigError(f"--label-from-name {text}: its group takes no part in matching '{name}' (an optional "
                          "or empty group?); the group must always capture the class")
    return found.group(1)


DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*$")


def parse_duration(text: str) -> float:
    """--time-budget: '30s', '5m', '1.5h' or plain seconds ('90') → seconds."""
    found = DURATION.match(str(text))
    if not found or float(found[1]) <= 0:
        raise ConfigError(f"--time-budget {text}: expected a duration such as 30s, 5m or 1h")
    return float(found[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[found[2]]


def flag(name: str) -> str:
    """The command-line spelling of a setting: image_size → --image-size."""
    return "--" + name.replace("_", "-")


# From this many epochs a model trained from scratch gets light augmentation under --augment auto (see below).
AUGMENT_FROM_EPOCHS = 30  # measured at 6, 7, 19-20 and 35-41 epochs: see below


def resolve_augment(augment: str, transfer: bool, epochs: int, photos: bool = False) -> str:
    """What --augment auto means: strong (with horizontal mirrors) for a pretrained backbone on photos, light for
    one on small images (a mirrored digit or letter can change class); from scratch, light when the run trains
    AUGMENT_FROM_EPOCHS epochs or more (--epochs, or with --time-budget the epochs expected to fit), else none.

    From scratch, few epochs learn faster without it: at kit's default 10 (README "Built-in datasets") light
    augmentation slowed learning more than it curbed overfitting on MNIST, Fashion-MNIST and CIFAR-10 sets of 100
    to 6,000 images per class. Long runs overfit without it (`kit run DATA --time-budget T --augment none|light`,
    2 cores, 2026-12-01, held-out accuracy, best validation log loss): 12,000 Fashion-MNIST PNGs, 60 s: 7 plain
    epochs 90.75% against 6 light 87.38%; 150 s: 20 plain 90.63%, 19 light 90.21%; 300 s: 41 plain 90.88% (0.297 at
    epoch 6, 0.572 at the end), 39 light 91.42% (0.250 at epoch 30); 10,000 CIFAR-10 JPEGs, 300 s: 41 plain 69.40%
    (1.075 at epoch 16, 1.494 at the end), 35 light 68.90% (0.916 at epoch 34 of 35, still falling).
    A backbone's fine-tuning and its augmented feature views (--feature-views) are where augmentation pays.
    """
    if augment != "auto":
        return augment
    if transfer:
        return "strong" if photos else "light"
    return "light" if epochs >= AUGMENT_FROM_EPOCHS else "none"


def check_run_name(name: str) -> str:
    """A run name is a folder name under --runs-dir, never a path: no separators, no '..', nothing hidden."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name or name.startswith("."):
        raise ConfigError(f"--name {name!r}: a run name is one folder name (no '/', '\\', '..' or leading '.'); "
                       "use --runs-dir to choose where runs go")
    return name


@dataclass
class Config:
    data: str = ""
    model: str = "auto"  # photos: a pretrained backbone within reach (kit.auto); else baseline, or with
    # --time-budget the lighter small when too few baseline epochs fit
    auto_reason: str = ""  # what --model auto chose and why (written by kit, read back from config.json)
    image_size: int = 0  # 0 = chosen from the data (median image side, clamped to 28..224)
    channels: int = 0  # 0 = 1 when every image is grayscale, else 3
    batch_size: int = 64
    epochs: int = 10
    learning_rate: float = 0.0  # 0 = the model's default
    optimizer: str = ""  # "" = the model's default
    validation_split: float = 0.2
    folds: int = 0  # k-fold: K models, out-of-fold predictions (oof.csv) and score; 0 = one split
    group_col: str = ""  # keep rows sharing this training-table column in the same fold
    seed: int = 42
    deterministic: bool = False  # TensorFlow op determinism: bit-identical reruns on CPU, slower
    augment: str = "auto"  # auto = light for backbones and long runs, else none (resolve_augment, above)
    early_stopping: int = 0  # patience in epochs; 0 = off
    time_budget: float = 0.0  # seconds the whole command may take (kit.budget); 0 = off. --epochs is then a cap
    metric: str = "auto"  # the competition's metric (kit.metrics): picks the best epoch; auto = from the answer kind
    class_weight: str = "none"  # none | balanced (loss weighted by inverse class frequency)
    sampling: str = "none"  # none | balanced (every class drawn equally often)
    tensorboard: bool = False  # TensorBoard logs in RUN/tensorboard
    cache_dir: str = ""  # decoded images on disk here (reused across runs) instead of in memory
    cache_memory_gb: float = 2.0  # decoded images larger than this go to disk (--cache-dir, else a temp folder)
    checkpoint_every: int = 0  # also checkpoint every N batches (0 = at the end of every epoch only)
    on_bad_image: str = "error"  # or "skip": train without missing/unreadable training images
    # transfer learning (models from `kit models` marked "backbone", or --backbone-file)
    weights: str = "imagenet"  # imagenet | none | path to a weights file
    backbone_file: str = ""  # your own .keras feature extractor (raw RGB 0..255 in)
    trust_model: str = ""  # the backbone file's sha256: kit loads model files it did not write only when given
    fine_tune_epochs: int = -1  # second phase: top layers unfrozen (BatchNorm stays frozen); -1 = auto (kit.training)
    fine_tune_layers: int = 30
    feature_views: int = 0  # frozen phase: views per image whose features are cached; 0 = auto (kit.fit.auto_views)
    feature_cache: bool = True  # frozen phase on cached backbone features (same result, much faster)
    head: str = "pool"  # pool (global pooling + dropout + dense) | flatten (the flowers tutorial's, for its recipe)
    # hardware
    strategy: str = "auto"  # auto | mirrored | multiworker | tpu | none
    mixed_precision: str = "auto"  # auto (GPUs with compute capability >= 7) | on | off
    jit_compile: bool = False
    label_col: str = ""
    follow_symlinks: bool = False  # read linked files and folders that lead outside the data folder
    train_csv: str = ""  # the tables, when kit's finding them by name is not enough (paths inside the data folder)
    test_csv: str = ""
    sample: str = ""
    label_from_name: str = ""  # regular expression, one group: the class in each training file's name
    label_map: str = ""  # cat=0,dog=1: what the submission writes for each class
    submission: str = "auto"  # auto (from the sample, kit.answers) | label | probability | probabilities | top-k | tags
    tag_separator: str = ""  # tags: what separates them in the labels (found when the table is read)
    unknown_class: str = ""  # top-k: the class meaning "none of these" (new_whale), placed by a tuned threshold
    positive: str = ""  # --submission probability: the class whose probability is written (default: from the sample)
    clip: float = 1e-6  # probabilities are written within clip..1-clip (log loss punishes exact 0 and 1 without end)
    train_images: str = ""  # folders inside the data folder, comma-separated
    test_images: str = ""
    name: str = ""
    runs_dir: str = "runs"

    def validate(self) -> "Config":
        """Every value of the right type and in range, naming the option: flags, config files and run folders
        all come through here."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "float" and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
                setattr(self, f.name, value)
            if not TYPE_CHECKS[f.type](value):
                raise ConfigError(f"{flag(f.name)} {value!r}: expected {TYPE_WORDS[f.type]}")
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                choices = ", ".join(map(str, allowed))
                raise ConfigError(f"{flag(name)} {getattr(self, name)!r}: expected one of {choices}")
        for name, (low, high) in RANGES.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ConfigError(f"{flag(name)} {value}: expected {low:g}..{high:g}")
        if not 0.0 < self.validation_split < 1.0:
            raise ConfigError(f"--validation-split {self.validation_split}: expected a fraction between 0 and 1")
        if self.image_size and not 8 <= self.image_size <= 1024:
            raise ConfigError(f"--image-size {self.image_size}: expected 8..1024 (or 0: from the data)")
        if self.folds == 1:
            raise ConfigError(f"--folds {self.folds}: expected 0 (one split) or at least 2")
        check_metric(self.metric)
        if self.name:
            check_run_name(self.name)
        parse_label_map(self.label_map)
        if self.label_from_name:
            parse_name_pattern(self.label_from_name)
        return self

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)


def load_config_file(path) -> dict:
    """Read defaults from a .toml (a [kit] table or top level) or .yaml file; unknown keys are an error."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml  # optional: only needed for YAML config files

            values = yaml.safe_load(text) or {}
        else:
            values = tomllib.loads(text)
    except ImportError:
        raise ConfigError(f"{path}: YAML needs PyYAML (pip install pyyaml), or use a .toml file") from None
    except Exception as e:
        raise ConfigError(f"{path}: cannot parse ({str(e).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected settings (a table of key = value), found a {type(values).__name__}")
    values = values.get("kit", values)
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected [kit] to be a table of settings, found a {type(values).__name__}")
    known = {f.name for f in fields(Config)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if "data" in values:  # a relative data path is relative to the config file
        values["data"] = str((path.parent / values["data"]).resolve()) if not Path(values["data"]).is_absolute() \
            else values["data"]
    return values


def make_config(file_values: dict | None = None, **flags) -> Config:
    """Defaults < config file < flags given on the command line (None means not given)."""
    merged = dict(file_values or {})
    merged.update({k: v for k, v in flags.items() if v is not None})
    try:
        return Config(**merged).validate()
    except TypeError as e:
        raise ConfigError(str(e)) from None
