"""Run folders: created without clobbering, written atomically, and read back with an integrity check."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .config import Config
from .errors import RunError

MODEL_FILE = "model.keras"
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
        raise RunError(f"{path}: missing; is {path.parent} a kit run folder?") from None
    except json.JSONDecodeError as e:
        raise RunError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None


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


def create_run_dir(runs_dir, name: str, force: bool) -> Path:
    """Make runs/NAME and lock it for this process; an existing run is replaced only with force, and never while
    another process is training into it."""
    run_dir = Path(runs_dir) / name
    if run_dir.exists():
        holder = _lock_holder(run_dir)
        if holder:
            raise RunError(f"{run_dir}: process {holder} is training into this run; wait for it or stop it first")
        if not force:
            raise RunError(f"{run_dir}: run already exists; pick another --name or pass --force to replace it")
        if not (run_dir / "config.json").exists() and any(run_dir.iterdir()):
            raise RunError(f"{run_dir}: exists and is not a kit run folder; refusing to replace it even with --force")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
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
    import platform
    from importlib import metadata

    from . import __version__

    packages = {}
    for name in ("tensorflow", "keras", "numpy", "pandas", "pillow", "scikit-learn", "click"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    import tensorflow as tf

    return {"kit": __version__, "python": platform.python_version(), "packages": packages,
            "hardware": {"machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
                         "gpus": [d.name for d in tf.config.list_physical_devices("GPU")]},
            "platform": platform.platform()}


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
        config = Config(**read_json(path / "config.json"))
        classes = read_json(path / "class_names.json")
        return cls(path=path, config=config, class_names=classes, image_size=config.image_size,
                   channels=config.channels, trusted=tuple(trusted))

    def members(self) -> list["Run"]:
        """The runs whose models predict for this one: its K fold runs for a k-fold run, else itself."""
        if self.config.folds >= 2:
            folds = [self.path / f"fold{k}" for k in range(self.config.folds)]
            done = [Run.open(f, self.trusted) for f in folds if (f / MODEL_FILE).is_file()]
            if not done:
                raise RunError(f"{self.path}: k-fold run without any finished fold model")
            return done
        return [self]

    def load_model(self):
        """Load model.keras in Keras safe mode, only if its sha256 is the one this run recorded (or is trusted)."""
        model_path = self.path / MODEL_FILE
        if not model_path.exists():
            raise RunError(f"{model_path}: missing; the run did not finish its first epoch")
        manifest = self.path / MANIFEST_FILE
        expected = read_json(manifest).get(MODEL_FILE) if manifest.is_file() else None
        actual = sha256_file(model_path)
        if actual != expected and actual not in self.trusted:
            why = (f"does not match the run's manifest ({str(expected)[:12]}…); the file was changed after kit "
                   "wrote it" if expected else "has no manifest; kit did not write it")
            raise RunError(f"{model_path}: sha256 {actual[:12]}… {why}. A model file can run code: if you trust "
                           f"it, pass --trust-model {actual}")
        return load_keras_file(model_path)


def load_keras_file(path, what: str = ""):
    """keras.models.load_model with safe mode on; a refused layer (Lambda, arbitrary code) is a one-line error."""
    import keras

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
    run_dir = Path(run_dir)
    write_json(run_dir / MANIFEST_FILE, {MODEL_FILE: sha256_file(run_dir / MODEL_FILE)})


RUN_TABLE_COLUMNS = ["name", "date", "model", "image_size", "epochs", "val_accuracy", "seconds", "submission"]


def list_runs(runs_dir) -> list[dict]:
    """One row per run folder under runs_dir (finished or not), best validation accuracy first."""
    rows = []
    for path in sorted(Path(runs_dir).iterdir()) if Path(runs_dir).is_dir() else []:
        if not (path / "config.json").is_file():
            continue
        config = read_json(path / "config.json")
        metrics = read_json(path / "metrics.json") if (path / "metrics.json").is_file() else {}
        rows.append({
            "name": path.name,
            "date": metrics.get("started", ""),
            "model": config.get("model", ""),
            "image_size": config.get("image_size", ""),
            "epochs": metrics.get("epochs_run", ""),
            "val_accuracy": metrics.get("val_accuracy"),
            "seconds": metrics.get("train_seconds", ""),
            "submission": "yes" if (path / "submission.csv").is_file() else "no",
        })
    return sorted(rows, key=lambda r: -(r["val_accuracy"] if r["val_accuracy"] is not None else -1))
