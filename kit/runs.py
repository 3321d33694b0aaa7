"""Run folders: created without clobbering, written atomically, and read back with an integrity check."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, fields
from importlib import metadata
from math import inf
from pathlib import Path

from . import __version__
from .config import Config, check_run_name
from .errors import ConfigError, RunError, warn
from .metrics import Decision

# Every file of a run folder, named here and nowhere else.
MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
CLASS_NAMES_FILE = "class_names.json"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
VAL_PREDICTIONS_FILE = "val_predictions.csv"
DECISION_FILE = "thresholds.json"  # how probabilities become the answer, tuned on validation (kit.metrics.Decision)
OOF_FILE = "oof.csv"  # a k-fold run's out-of-fold predictions
FOLDS_FILE = "folds.csv"
SKIPPED_FILE = "skipped.csv"
VALIDATION_FILE = "validation.json"  # what validation saw: its summary and every warning
SUBMISSION_FILE = "submission.csv"
SUBMISSION_INFO_FILE = "submission.json"  # kit run: where its submission went, its rows, the held-out score
EXPORT_DIR = "export"
TENSORBOARD_DIR = "tensorboard"
CHECKPOINT_DIR = "checkpoints"  # kit.checkpoints: the .npz files and CHECKPOINT_STATE_FILE
CHECKPOINT_STATE_FILE = "checkpoint.json"
REPORT_TEXT, REPORT_JSON = "classification_report.txt", "classification_report.json"
MATRIX_CSV, MATRIX_PNG, CURVES_PNG, REPORT_HTML = ("confusion_matrix.csv", "confusion_matrix.png", "curves.png",
                                                   "report.html")
_UMASK = os.umask(0)
os.umask(_UMASK)
MANIFEST_FILE = "manifest.json"


@contextmanager
def atomic_write(path, mode: str = "w", **kwargs):
    """Write to a temporary file beside `path`, flush it to disk, then os.replace: never a half file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give ours the permissions open() would
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path, value) -> None:
    with atomic_write(path, encoding="utf-8") as f:
        json.dump(value, f, indent=2, sort_keys=False, default=str)
        f.write("\n")


def read_json(path):
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if is_kit_run(path.parent):
            raise RunError(f"{path}: missing; this kit run stopped before it wrote it (killed at its start?) or is "
                           "still being written; train it again with --force") from None
        raise RunError(f"{path}: missing; is {path.parent} a kit run folder?") from None
    except json.JSONDecodeError as e:
        raise RunError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None


def write_table(path, frame) -> None:
    """A pandas table as CSV, atomically."""
    with atomic_write(path, newline="", encoding="utf-8") as f:
        frame.to_csv(f, index=False)


def write_history(run_dir, rows: list[dict]) -> None:
    """history.csv: one row per finished epoch (metrics, learning rate, seconds)."""

    with atomic_write(Path(run_dir) / HISTORY_FILE, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_skipped(run_dir, rows: list[tuple]) -> None:
    """Add (file, row, reason) rows to skipped.csv, the images training went on without."""

    path = Path(run_dir) / SKIPPED_FILE
    earlier = list(csv.reader(path.open(newline="", encoding="utf-8")))[1:] if path.is_file() else []
    with atomic_write(path, newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "row", "reason"])
        writer.writerows(earlier + [list(r) for r in rows])


def write_run_settings(run_dir, config: Config, class_names: list[str]) -> None:
    """config.json and class_names.json: what `make-submission` and `report` need besides the model."""
    write_json(Path(run_dir) / CONFIG_FILE, config.__dict__)
    write_json(Path(run_dir) / CLASS_NAMES_FILE, class_names)


def save_model(model, path) -> None:
    """Save a Keras model atomically (Keras insists on the .keras suffix, so the temp name keeps it)."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.partial.keras")
    model.save(tmp)
    with open(tmp, "rb+") as f:  # on disk before it takes the real name
        os.fsync(f.fileno())
    os.replace(tmp, path)


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def new_run_name(model: str) -> str:
    return time.strftime("%Y%m%d-%H%M%S") + f"-{model}"


LOCK_FILE = ".lock"


def _lock_holder(run_dir: Path) -> int | None:
    """The pid of a live process training into run_dir, if any (a stale lock from a dead process is ignored)."""
    try:
        pid = int((run_dir / LOCK_FILE).read_text().strip() or 0)
    except (OSError, ValueError):
        return None
    if pid <= 0 or pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


RUN_INFO_FILE = "run.json"
MARK = {"written_by": "kit"}  # in run.json from the moment the folder exists: the folder is kit's
OUTPUTS_IN_RUN = (SUBMISSION_FILE, EXPORT_DIR)  # what kit's output commands write into a run folder by default


def is_kit_run(folder) -> bool:
    """Whether a folder carries kit's mark: a run.json kit wrote (older kits: one with a data fingerprint)."""
    try:
        info = json.loads((Path(folder) / RUN_INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and (info.get("written_by") == "kit" or "data_fingerprint" in info)


def is_run_output(path) -> bool:
    """Whether `path` is where kit's own output commands write inside a kit run folder (RUN/submission.csv,
    RUN/export/…), so that --force may replace it."""
    path = Path(os.path.abspath(path))
    for run in path.parents:
        if is_kit_run(run):
            return path.relative_to(run).parts[0] in OUTPUTS_IN_RUN
    return False


def create_run_dir(runs_dir, name: str, force: bool) -> Path:
    """Make runs/NAME, mark it as kit's and lock it for this process; an existing run is replaced only with
    force, only when it carries kit's mark, and never while another process is training into it."""
    run_dir = Path(runs_dir) / check_run_name(name)
    if run_dir.is_symlink() or (run_dir.exists() and not run_dir.is_dir()):
        raise RunError(f"{run_dir}: exists and is not a run folder; refusing to replace it even with --force")
    if run_dir.exists():
        holder = _lock_holder(run_dir)
        if holder:
            raise RunError(f"{run_dir}: process {holder} is training into this run; wait for it or stop it first")
        if not force:
            raise RunError(f"{run_dir}: run already exists; pick another --name or pass --force to replace it")
        if not is_kit_run(run_dir) and any(run_dir.iterdir()):
            raise RunError(f"{run_dir}: exists and is not a kit run folder (no run.json of kit's); refusing to "
                           "replace it even with --force")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    write_json(run_dir / RUN_INFO_FILE, MARK)
    lock_run_dir(run_dir)
    return run_dir


def lock_run_dir(run_dir: Path) -> None:
    """Mark run_dir as being trained by this process; refused while another live process holds it."""
    holder = _lock_holder(run_dir)
    if holder:
        raise RunError(f"{run_dir}: process {holder} is training into this run; wait for it or stop it first")
    (run_dir / LOCK_FILE).write_text(str(os.getpid()))


def remove_partial_files(run_dir: Path) -> list[Path]:
    """Delete the temporary files a killed process leaves behind (the complete files are never touched)."""
    partial = [p for pattern in (".*.tmp", ".*.partial.keras") for p in Path(run_dir).rglob(pattern)]
    for path in partial:
        path.unlink()
    return partial


def release_run_dir(run_dir) -> None:
    lock = Path(run_dir) / LOCK_FILE
    if lock.exists() and _lock_holder(Path(run_dir)) is None:
        lock.unlink()


def environment_info() -> dict:
    """Versions and hardware, for run.json."""


    packages = {}
    for name in ("tensorflow", "keras", "numpy", "pandas", "pillow", "scikit-learn", "click"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    from .quiet import tensorflow as tf

    return {"kit": __version__, "python": platform.python_version(), "packages": packages,
            "hardware": {"machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
                         "gpus": [d.name for d in tf.config.list_physical_devices("GPU")]},
            "platform": platform.platform()}


def read_config(run_dir) -> Config:
    """A run's config.json, checked like flags: an unknown key (a newer kit's) is ignored with a warning; a
    wrong type or value is one line naming the file and the key."""


    path = Path(run_dir) / CONFIG_FILE
    values = read_json(path)
    if not isinstance(values, dict):
        raise RunError(f"{path}: expected a JSON object of settings, found {type(values).__name__}")
    known = {f.name for f in fields(Config)}
    unknown = sorted(set(values) - known)
    if unknown:
        warn(f"{path}: ignoring setting(s) this kit does not know: {', '.join(unknown[:5])}"
             + (f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""))
    try:
        config = Config(**{k: v for k, v in values.items() if k in known}).validate()
    except ConfigError as e:  # "--image-size 7: expected …" → "config.json: key 'image_size' 7: expected …"
        option, _, rest = str(e).partition(" ")
        raise RunError(f"{path}: key '{option.lstrip('-').replace('-', '_')}' {rest}") from None
    if not config.image_size or not config.channels:
        raise RunError(f"{path}: image_size and channels must be set in a trained run (found "
                       f"{config.image_size} and {config.channels})")
    return config


def read_class_names(run_dir) -> list[str]:
    """class_names.json: a list of at least two distinct strings."""
    path = Path(run_dir) / CLASS_NAMES_FILE
    names = read_json(path)
    if not isinstance(names, list) or len(names) < 2 or not all(isinstance(n, str) and n for n in names):
        raise RunError(f"{path}: expected a list of at least two class names (non-empty strings)")
    if len(set(names)) != len(names):
        raise RunError(f"{path}: class names repeat ({_first_repeat(names)!r}); the list must be distinct")
    manifest = Path(run_dir) / MANIFEST_FILE
    recorded = read_json(manifest) if manifest.is_file() else {}
    if isinstance(recorded, dict) and isinstance(recorded.get(CLASS_NAMES_FILE), str) and \
            recorded[CLASS_NAMES_FILE] != names_digest(names):
        raise RunError(f"{path}: changed after kit wrote it (the names differ from those {manifest} records); the "
                       "model's outputs follow the original names and order, so restore the file or train again")
    return names


def write_decision(run_dir, decision: Decision, class_names: list[str]) -> None:
    write_json(Path(run_dir) / DECISION_FILE, decision.to_json(class_names))


def read_decision(run_dir, class_names: list[str]) -> Decision:
    """thresholds.json (an empty Decision when the run has none): numbers within 0..1, one per tag."""
    path = Path(run_dir) / DECISION_FILE
    if not path.is_file():
        return Decision()
    values = read_json(path)
    tags = values.get("thresholds") if isinstance(values, dict) else None
    unknown = values.get("unknown_threshold") if isinstance(values, dict) else None
    numbers = (list(tags.values()) if isinstance(tags, dict) else []) + ([unknown] if unknown is not None else [])
    if not isinstance(tags, dict) or (tags and set(tags) != set(class_names)) or not all(
            finite_number(v) is not None and 0 <= v <= 1 for v in numbers):
        raise RunError(f"{path}: expected {{\"thresholds\": {{tag: number within 0..1 for every tag}}, "
                       "\"unknown_threshold\": number or null}")
    return Decision.from_json(values, class_names)


def read_metrics(run_dir) -> dict:
    """metrics.json as a dict ({} while the run has none)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return {}
    metrics = read_json(path)
    if not isinstance(metrics, dict):
        raise RunError(f"{path}: expected a JSON object of metrics, found {type(metrics).__name__}")
    return metrics


def _first_repeat(values: list):
    seen = set()
    for v in values:
        if v in seen:
            return v
        seen.add(v)
    return None


@dataclass
class Run:
    """A finished (or interrupted) run folder, read back."""

    path: Path
    config: Config
    class_names: list[str]
    image_size: int
    channels: int
    trusted: tuple[str, ...] = ()  # sha256s of model files to load even if this run's manifest disagrees

    @classmethod
    def open(cls, path, trusted=()) -> "Run":
        path = Path(path)
        if not path.is_dir():
            raise RunError(f"{path}: no such run folder")
        holder = _lock_holder(path)
        if holder:
            raise RunError(f"{path}: process {holder} is still training this run; wait for it to finish")
        if not (path / CONFIG_FILE).is_file() and (path / RUN_INFO_FILE).is_file():
            raise RunError(f"{path}: the run stopped before it wrote {CONFIG_FILE} (killed at its start?); "
                           "train it again with --force")
        config = read_config(path)
        classes = read_class_names(path)
        return cls(path=path, config=config, class_names=classes, image_size=config.image_size,
                   channels=config.channels, trusted=tuple(trusted))

    def members(self) -> list["Run"]:
        """The runs whose models predict for this one: its K fold runs for a k-fold run, else itself."""
        if self.config.folds >= 2:  # every fold, or none: a k-fold run predicts with all K of its models
            folds = [self.path / f"fold{k}" for k in range(self.config.folds)]
            missing = [f for f in folds if not (f / MODEL_FILE).is_file()]
            if missing:
                raise RunError(f"{missing[0] / MODEL_FILE}: missing ({len(missing)} of the run's {len(folds)} fold "
                               "models are); a k-fold run predicts with all its folds, so finish it with "
                               f"`kit train --resume {self.path}` or train it again")
            linked = [f for f in folds if f.is_symlink()]
            if linked:
                raise RunError(f"{linked[0]}: a symbolic link; a k-fold run's folds are folders of its own")
            members = [Run.open(f, self.trusted) for f in folds]
            for k, member in enumerate(members):
                if member.config.name != f"fold{k}" or member.config.data != self.config.data or \
                        member.config.seed != self.config.seed:
                    raise RunError(f"{member.path}: not fold {k} of this run (its config.json names run "
                                   f"'{member.config.name}'); the run folder was edited, so train it again")
                if member.class_names != self.class_names:
                    raise RunError(f"{member.path / CLASS_NAMES_FILE}: its classes differ from the k-fold run's "
                                   f"({self.path / CLASS_NAMES_FILE}); the run folder was edited")
            return members
        return [self]

    def load_model(self):
        """Load model.keras in Keras safe mode, only if its sha256 is the one this run recorded (or is trusted)."""
        model_path = self.path / MODEL_FILE
        if not model_path.exists():
            raise RunError(f"{model_path}: missing; the run did not finish its first epoch")
        manifest = self.path / MANIFEST_FILE
        recorded = read_json(manifest) if manifest.is_file() else {}
        if not isinstance(recorded, dict) or not isinstance(recorded.get(MODEL_FILE, ""), str):
            raise RunError(f"{manifest}: expected {{\"{MODEL_FILE}\": \"<sha256>\"}}")
        expected = recorded.get(MODEL_FILE)
        actual = sha256_file(model_path)
        if actual != expected and actual not in self.trusted:
            why = (f"does not match the run's manifest ({str(expected)[:12]}…); the file was changed after kit "
                   "wrote it" if expected else "has no manifest; kit did not write it")
            raise RunError(f"{model_path}: sha256 {actual[:12]}… {why}. A model file can run code: if you trust "
                           f"it, pass --trust-model {actual}")
        return self._checked(load_keras_file(model_path))

    def _checked(self, model):
        """The model must take this run's images and give one probability per class of class_names.json."""
        want_in = (self.image_size, self.image_size, self.channels)
        if tuple(model.input_shape[1:]) != want_in:
            raise RunError(f"{self.path / CONFIG_FILE}: image_size/channels {want_in} do not match the model's input "
                           f"{tuple(model.input_shape[1:])}")
        if model.output_shape[-1] != len(self.class_names):
            raise RunError(f"{self.path / CLASS_NAMES_FILE}: {len(self.class_names)} classes, but the model has "
                           f"{model.output_shape[-1]} outputs")
        return model


def load_keras_file(path, what: str = ""):
    """keras.models.load_model with safe mode on; a refused layer (Lambda, arbitrary code) is a one-line error."""
    from .quiet import keras

    try:
        return keras.models.load_model(path, safe_mode=True, compile=False)
    except Exception as e:
        raise RunError(f"{what}{path}: cannot load in Keras safe mode ({str(e).strip().splitlines()[0][:200]})") \
            from None


def check_trusted(path, trusted, what: str) -> None:
    """A model file kit did not write loads only when its sha256 was given with --trust-model."""
    actual = sha256_file(path)
    if actual not in tuple(trusted):
        raise RunError(f"{what} {path}: not written by kit (sha256 {actual}). A model file can run code: check "
                       f"where it came from, then pass --trust-model {actual}")


def write_manifest(run_dir) -> None:
    """The sha256 of the model and of its class names: a model's outputs mean nothing without the names."""
    run_dir = Path(run_dir)
    write_json(run_dir / MANIFEST_FILE, {MODEL_FILE: sha256_file(run_dir / MODEL_FILE),
                                         CLASS_NAMES_FILE: names_digest(read_json(run_dir / CLASS_NAMES_FILE))})


def names_digest(names) -> str:
    """The class names' sha256, of their canonical JSON (the file's spacing does not matter, their order does)."""
    return hashlib.sha256(json.dumps(names, ensure_ascii=False).encode("utf-8")).hexdigest()


RUN_TABLE_COLUMNS = ["name", "date", "model", "image_size", "epochs", "metric", "score", "val_accuracy", "seconds",
                     "submission"]


def finite_number(value) -> float | None:
    """A metric read back from metrics.json, or None when it is not a finite number (an edited file)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and abs(value) != inf
    return float(value) if ok else None


def list_runs(runs_dir) -> list[dict]:
    """One row per run folder under runs_dir (finished or not): a leaderboard, each metric's best run first (the
    competition's metric each run was scored with; accuracy for runs from before kit knew it)."""
    rows = []
    for path in sorted(Path(runs_dir).iterdir()) if Path(runs_dir).is_dir() else []:
        if not (path / CONFIG_FILE).is_file():
            continue
        try:
            config, metrics = vars(read_config(path)), read_metrics(path)
        except RunError as e:  # one damaged run must not hide the others

            warn(f"{e} (run left out of the table)")
            continue
        metric = metrics.get("metric") if isinstance(metrics.get("metric"), str) else "accuracy"
        rows.append({
            "name": path.name,
            "date": metrics.get("started", ""),
            "model": config.get("model", ""),
            "image_size": config.get("image_size", ""),
            "epochs": metrics.get("epochs_run", ""),
            "metric": metric,
            "score": finite_number(metrics.get("val_score", metrics.get("val_accuracy"))),
            "val_accuracy": finite_number(metrics.get("val_accuracy")),
            "seconds": metrics.get("train_seconds", ""),
            "submission": "yes" if (path / SUBMISSION_FILE).is_file() else "no",
        })
    unscored = float("inf")
    return sorted(rows, key=lambda r: (r["metric"], unscored if r["score"] is None else
                                       r["score"] if r["metric"] == "log_loss" else -r["score"]))
