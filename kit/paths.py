"""kit's two path policies: one for every file it reads from a data folder, one for every file it writes.

Reading: a path is inside the data folder when its real path (links resolved) is; a link that leads out is refused,
named once, unless the user passes --follow-symlinks. A folder kit derived from the data (zips extracted, pixel
tables converted: kit.sources) links back to the user's entries, so its reader accepts those targets too.

Writing: kit writes only through real folders. Every component of an output path that exists must be a real
folder (the last one a real file or nothing), so no write, and no --force, ever reaches through a link into
someone else's files.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import DataError, OutputError

ORIGIN_FILE = ".kit-origin"  # in a derived folder: the data folder it was derived from (its links lead there)


def unsafe_path_reason(value: str) -> str | None:
    """Why a CSV value must not be used as a path (it could reach outside the data folder), else None."""
    if "\x00" in value:
        return "contains a NUL byte"
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://", value):
        return "is a URL"
    if value.startswith(("/", "\\")) or re.match(r"^[a-zA-Z]:", value):
        return "is an absolute path"
    if ".." in re.split(r"[\\/]", value):
        return "goes up with '..'"
    return None


def under(path, folder) -> bool:
    """Whether `path` (existing or not) is `folder` or lies under it, links resolved."""
    real, top = os.path.realpath(path), os.path.realpath(folder)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def data_roots(root: Path) -> tuple[Path, ...]:
    """The folders a data folder's reader may reach: the folder, and for a derived folder the user's folder its
    links lead back to."""
    origin = Path(root) / ORIGIN_FILE
    if origin.is_file() and not origin.is_symlink():
        return Path(root), Path(origin.read_text(encoding="utf-8").strip())
    return (Path(root),)


def inside_data(path, root: Path) -> bool:
    return any(under(path, r) for r in data_roots(root))


def relative_name(path, root: Path | None) -> str:
    """A path as the user knows it: relative to the data folder (its name alone without one; itself when outside)."""
    if root is None:
        return Path(path).name
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


def confined(path, root: Path, follow: bool) -> None:
    """The read policy: a file or folder a link takes outside the data folder is refused, naming the link once,
    unless follow (--follow-symlinks)."""
    if follow or inside_data(path, root):
        return
    origin = data_roots(root)[-1]
    raise DataError(f"{relative_name(path, root)}: a symbolic link that leads outside the data folder (to "
                    f"{os.path.realpath(path)}); kit reads only what is inside {origin}, so pass --follow-symlinks "
                    "to read linked files and folders")


def readable_table(path: Path, root: Path, follow: bool = False) -> Path:
    """A table (CSV, label list, pixel table) kit may read: inside the data folder, links resolved."""
    confined(path, root, follow)
    return path


def link_on_the_way(path) -> Path | None:
    """The first component of `path`, as given, that is a symbolic link (None: every existing one is real). The
    system's own top-level links (macOS' /var and /tmp, /home on some systems) are where everyone's files live,
    not a detour, so an absolute path's first component is not judged."""
    path = Path(path)
    parts = path.parts
    for i in range(2 if path.is_absolute() else 1, len(parts) + 1):
        step = Path(*parts[:i])
        if step.is_symlink():
            return step
        if not step.exists():
            return None
    return None


def check_write_path(path, option: str) -> Path:
    """The write policy: never through a link, at any component of the path as given."""
    link = link_on_the_way(path)
    if link is not None:
        raise OutputError(f"{option} {path}: {link} is a symbolic link (to {os.path.realpath(link)}); kit never "
                          "writes through links, so give the real path")
    return Path(path)
