"""Where kit may write: an output never lands in a data folder, and `--force` replaces only what kit wrote.

kit remembers what it wrote in a small ledger outside every project (path → fingerprint of the content kit
left there), so `--force` can tell "kit's submission from last time" from "a table of yours with the same
name". A file changed since kit wrote it is the user's again. Run folders carry their own mark (run.json,
see kit.runs), so anything kit writes inside one under a name of the run layout is kit's too.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

from .errors import OutputError, warn
from .paths import check_write_path, under
from .runs import is_run_output, write_json

LEDGER_LIMIT = 5_000  # entries kept; the oldest go first (losing one only means --force asks again)


def _state_dir() -> Path:
    if os.environ.get("KIT_STATE_DIR"):
        return Path(os.environ["KIT_STATE_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "kit"


def _ledger_path() -> Path:
    return _state_dir() / "written.json"


def _read_ledger() -> dict:
    try:
        value = json.loads(_ledger_path().read_text(encoding="utf-8"))
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}


def _ledger_trouble() -> str:
    """Why kit cannot consult its ledger ('' when it can, or when it does not exist yet)."""
    path = _ledger_path()
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ""
    except OSError as e:
        return f"kit's record of the files it wrote ({path}) cannot be read ({e.strerror})"
    except ValueError:
        return f"kit's record of the files it wrote ({path}) is damaged"
    return "" if isinstance(value, dict) else f"kit's record of the files it wrote ({path}) is damaged"


def fingerprint(path: Path) -> str:
    """A file's sha256; a folder's listing (relative name, size, modification time) hashed, so a file added,
    removed or changed inside it changes the fingerprint."""
    digest = hashlib.sha256()
    if path.is_dir():
        for folder, dirs, files in sorted(os.walk(path)):
            dirs.sort()
            for name in sorted(files):
                info = os.lstat(os.path.join(folder, name))
                rel = os.path.relpath(os.path.join(folder, name), path)
                digest.update(f"{rel}\0{info.st_size}\0{info.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        return "dir:" + digest.hexdigest()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def record_written(path) -> None:
    """Remember that kit wrote `path` as it is now. Best effort: a ledger that cannot be written only means a
    later --force is refused, never that something is replaced."""
    path = Path(os.path.abspath(path))
    ledger = _read_ledger()
    ledger.pop(str(path), None)
    ledger[str(path)] = fingerprint(path)
    while len(ledger) > LEDGER_LIMIT:
        ledger.pop(next(iter(ledger)))
    try:
        _ledger_path().parent.mkdir(parents=True, exist_ok=True)
        write_json(_ledger_path(), ledger)
    except OSError as e:
        warn(f"{_ledger_path()}: kit could not record that it wrote {path} ({e.strerror}); a later --force will "
             "not replace it, so remove it yourself then")


def written_by_kit(path) -> bool:
    """Whether `path` is as kit left it: recorded in the ledger with the same content, or a file of a kit run
    folder's own layout."""
    path = Path(os.path.abspath(path))
    if is_run_output(path):
        return True
    recorded = _read_ledger().get(str(path))
    try:
        return recorded is not None and recorded == fingerprint(path)
    except OSError:
        return False


def _kind(mode: int) -> str | None:
    """What a non-regular file is, in words; None for a regular file."""
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return None


inside = under  # kit.paths' rule, under the name the rest of kit uses for outputs


def check_output(path, option: str, force: bool, data_dirs=(), folder: bool = False) -> Path:
    """Refuse an output that would land in a data folder, replace something that is not a file (or, with
    folder=True, not a folder), or replace what kit did not write; returns the path to write."""
    path = check_write_path(path, option)
    for data in data_dirs:
        if data and inside(path, data):
            raise OutputError(f"{option} {path}: inside the data folder {data}; kit never writes there, so choose "
                           "a path outside it")
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if parent.exists() and not parent.is_dir():
            raise OutputError(f"{option} {path}: {parent} is a file, not a folder") from None
        return path
    kind = _kind(mode)
    if kind and not (folder and stat.S_ISDIR(mode)):
        raise OutputError(f"{option} {path}: is {kind}; kit writes only to a {'folder' if folder else 'file'} path")
    if folder and stat.S_ISDIR(mode) and not any(path.iterdir()):
        return path  # an empty folder: nothing of anyone's to lose
    if not force:
        raise OutputError(f"{option} {path}: already exists; pass --force to replace what kit wrote there, or choose "
                       "another path")
    if not written_by_kit(path):
        trouble = "" if is_run_output(path) else _ledger_trouble()
        if trouble:
            raise OutputError(f"{option} {path}: exists, and {trouble}, so kit cannot tell whether it wrote it; "
                              "remove it yourself or choose another path")
        raise OutputError(f"{option} {path}: exists and kit did not write it (or it changed since); --force replaces "
                          "only kit's own files, so remove it yourself or choose another path")
    return path


def remove_output(path: Path) -> None:
    """Delete an output that check_output allowed to be replaced (a folder or a file)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
