"""Archives (zip and tar) extracted safely into a folder of kit's own.

Every member is judged before a byte is written: no member may leave the folder, be a link or a device, claim an
absurd size, or grow absurdly; the whole archive gets a budget too (the sum of its members, and its ratio to the
archive's own size). While writing, kit counts what the decompressor really produces, so a member that lies
about its size is caught. Encrypted, unsupported, corrupt and truncated archives each get one line.
"""

from __future__ import annotations

import re
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import DataError

MAX_TOTAL_BYTES = 200 << 30  # everything kit extracts for one data folder
MEMBER_RATIO = 200  # a member growing more than this (and past MEMBER_RATIO_FROM) is a bomb, not a competition
MEMBER_RATIO_FROM = 10 << 20
ARCHIVE_RATIO = 100  # the whole archive likewise: many members each under the member limit still add up
ARCHIVE_RATIO_FROM = 64 << 20
ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
METHOD_NAMES = {9: "deflate64", 6: "implode", 93: "zstandard", 95: "xz", 98: "ppmd", 99: "AES encryption"}
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
JUNK = ("__MACOSX/",)  # macOS' resource forks: never data


def is_archive(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".zip") or name.endswith(TAR_SUFFIXES)


def archive_stem(path: Path) -> str:
    """train.zip → train, images.tar.gz → images."""
    name = path.name
    for suffix in (".zip",) + TAR_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def is_junk(member: str) -> bool:
    parts = PurePosixPath(member).parts
    return member.startswith(JUNK) or any(p.startswith("._") or p == ".DS_Store" for p in parts)


@dataclass
class Member:
    name: str  # the member's path inside the archive, with '/' separators
    size: int  # what it claims to hold once extracted
    packed: int  # its compressed size
    source: object  # the library's own record of it


class Budget:
    """What every archive of one data folder may still expand to."""

    def __init__(self, total: int = MAX_TOTAL_BYTES):
        self.left = total

    def spend(self, archive: Path, amount: int) -> None:
        self.left -= amount
        if self.left < 0:
            raise DataError(f"{archive.name}: the archives would expand to more than {MAX_TOTAL_BYTES >> 30} GB in "
                            "all; refusing (a zip bomb?)")


def members(archive: Path) -> list[Member]:
    """The archive's file members, every one judged safe to extract (else one line naming the first that is not)."""
    try:
        found = _zip_members(archive) if archive.name.lower().endswith(".zip") else _tar_members(archive)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError, ValueError) as e:
        raise DataError(f"{archive.name}: not a readable {'zip' if archive.suffix.lower() == '.zip' else 'tar'} "
                        f"archive ({_reason(e)}); download it again") from None
    kept = [m for m in found if not is_junk(m.name)]
    for m in kept:
        _check_name(archive, m.name)
    _check_unique(archive, [m.name for m in kept])
    for m in kept:
        if m.packed and m.size > MEMBER_RATIO * m.packed and m.size > MEMBER_RATIO_FROM:
            raise DataError(f"{archive.name}: member '{m.name}' grows {m.size // m.packed}x when extracted; refusing "
                            "the archive (a zip bomb?)")
    total = sum(m.size for m in kept)
    size = max(1, archive.stat().st_size)
    if total > ARCHIVE_RATIO * size and total > ARCHIVE_RATIO_FROM:
        raise DataError(f"{archive.name}: {size:,} bytes that would expand to {total:,} ({total // size}x); refusing "
                        "the archive (a zip bomb?)")
    return kept


def _reason(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:160] or type(error).__name__


def _zip_members(archive: Path) -> list[Member]:
    with zipfile.ZipFile(archive) as z:
        infos = z.infolist()
    found = []
    for info in infos:
        if info.is_dir():
            continue
        if info.flag_bits & 0x1:
            raise DataError(f"{archive.name}: member '{info.filename}' is encrypted (password-protected); extract the "
                            "archive yourself with its password and give kit the folder")
        if info.compress_type not in ZIP_METHODS:
            method = METHOD_NAMES.get(info.compress_type, f"method {info.compress_type}")
            raise DataError(f"{archive.name}: member '{info.filename}' is compressed with {method}, which kit cannot "
                            "read; extract the archive with unzip or 7z and give kit the folder")
        mode = info.external_attr >> 16
        if mode and (stat.S_ISLNK(mode) or not (stat.S_ISREG(mode) or stat.S_IFMT(mode) == 0)):
            raise DataError(f"{archive.name}: member '{info.filename}' is a {'symbolic link' if stat.S_ISLNK(mode) else 'special file'}; "
                            "kit extracts only regular files, so refusing the archive")
        found.append(Member(_normal(info.filename), info.file_size, info.compress_size, info))
    return found


def _normal(name: str) -> str:
    """A member's name as a relative POSIX path: Windows separators, './' and doubled slashes tidied (a name
    that leaves the folder keeps its '..' or leading '/' and is refused)."""
    name = name.replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return re.sub(r"/+", "/", name.replace("/./", "/"))


def _tar_members(archive: Path) -> list[Member]:
    with tarfile.open(archive) as t:
        infos = t.getmembers()
    found = []
    for info in infos:
        if info.isdir():
            continue
        if not info.isfile():
            kind = "link" if info.issym() or info.islnk() else "special file"
            raise DataError(f"{archive.name}: member '{info.name}' is a {kind}; kit extracts only regular files, so "
                            "refusing the archive")
        found.append(Member(_normal(info.name), info.size, 0, info))
    return found


def _check_name(archive: Path, name: str) -> None:
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":") or "\0" in name:
        raise DataError(f"{archive.name}: member '{name}' would be written outside the folder; refusing the archive")


def _check_unique(archive: Path, names: list[str]) -> None:
    """Two members of one name, or a file that another member needs as a folder, cannot both be extracted."""
    seen, folders = set(), set()
    for name in names:
        key = name.replace("\\", "/")
        if key in seen:
            raise DataError(f"{archive.name}: member '{name}' appears twice; refusing the archive")
        seen.add(key)
        parts = key.split("/")
        folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
    clash = sorted(seen & folders)
    if clash:
        raise DataError(f"{archive.name}: '{clash[0]}' is both a file and a folder of other members; refusing the "
                        "archive")


def extract(archive: Path, out: Path, chosen: list[Member], base: str, budget: Budget) -> None:
    """Write the chosen members under out/base, each to a new file (never over anything), counting the bytes the
    decompressor really gives."""
    budget.spend(archive, sum(m.size for m in chosen))
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as z:
                for m in chosen:
                    with z.open(m.source) as source:
                        _write_member(archive, m, source, out / base / m.name)
        else:
            with tarfile.open(archive) as t:
                for m in chosen:
                    with t.extractfile(m.source) as source:
                        _write_member(archive, m, source, out / base / m.name)
    except DataError:
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, ValueError, NotImplementedError,
            RuntimeError) as e:
        raise DataError(f"{archive.name}: corrupt or truncated ({_reason(e)}); download it again") from None
    except OSError as e:
        if e.filename:  # the disk said no (full, read-only): kit's one line for the OS names the path
            raise
        raise DataError(f"{archive.name}: corrupt or truncated ({_reason(e)}); download it again") from None


def _write_member(archive: Path, member: Member, source, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(target, "xb") as f:  # "x": a name already there (two members of one name) is never written over
        while True:
            chunk = source.read(1 << 20)
            if not chunk:
                break
            written += len(chunk)
            if written > member.size:
                raise DataError(f"{archive.name}: member '{member.name}' holds more than the {member.size:,} bytes it "
                                "claims; refusing the archive (a zip bomb?)")
            f.write(chunk)
