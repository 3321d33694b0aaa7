"""What the benchmarks share: where ../shared is, its backbone, and its archives extracted once (outside the
project: the data files are never copied into it)."""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

SHARED = Path(os.environ.get("KIT_SHARED", Path(__file__).resolve().parents[2] / "shared"))  # ../shared
BACKBONE = SHARED / "weights" / "efficientnet_lite0_imagenet_notop.keras"


def extracted(archive: str, work: Path) -> Path:
    """../shared/datasets/ARCHIVE extracted into WORK/<its name> once (a half-done extraction is redone)."""
    target, partial = work / archive.split(".")[0], work / ".extracting"
    if not target.exists():
        shutil.rmtree(partial, ignore_errors=True)
        with tarfile.open(SHARED / "datasets" / archive) as tar:
            tar.extractall(partial, filter="data")
        partial.rename(target)
    return target
