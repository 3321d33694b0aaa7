"""The one place for kit's errors: each carries a one-line message naming the file (and row)."""

import re
import sys
from contextlib import contextmanager


class KitError(Exception):
    """Base class: the CLI prints `Error: <message>` and exits non-zero, without a traceback."""

    exit_code = 2


class DataError(KitError):
    """The data folder or one of its tables is unusable as given."""


class ImageError(DataError):
    """One image cannot be read; the message names the file (and `path` holds it, where known)."""

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message)
        self.path = path


class RunError(KitError):
    """A run folder is missing, incomplete, already exists, or fails its integrity check."""


class SubmissionError(KitError):
    """A submission would not be accepted by the leaderboard (or would overwrite a file)."""


class OutputError(KitError):
    """An output path kit must not write: inside a data folder, not a file, or holding what kit did not write."""


class ConfigError(KitError):
    """An option or config-file value is invalid."""


class TrainingDiverged(RunError):
    """The loss became NaN or infinite: training stopped, and no diverged model is ever used."""


class Interrupted(RunError):
    """Ctrl-C stopped training before anything worth keeping was finished; a checkpoint may allow resuming."""

    exit_code = 130


def image_error_in(error: Exception) -> ImageError | None:
    """The ImageError kit's loader raised inside a tf.data pipeline, which TensorFlow re-raises as an error of its
    own whose long text holds the original's "ImageError: <message>" line; None when there is none."""
    match = re.search(r"ImageError: ([^\n]+)", str(error))
    return ImageError(match.group(1).strip()) if match else None


def one_line(text: str) -> str:
    """A message kept to one line: line breaks inside names (a quoted id, a file name) are shown as \\n."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def columns_text(columns, first: int = 6) -> str:
    """Column names for a message: all of a narrow table, the first few and the count of a wide one."""
    columns = [str(c) for c in columns]
    if len(columns) <= first:
        return ", ".join(columns)
    return f"{', '.join(columns[:first])}, … ({len(columns)} columns)"


def few(values: list[str], n: int = 3) -> str:
    shown = ", ".join(f"'{v}'" for v in values[:n])
    return shown + (", …" if len(values) > n else "") if values else "none"


def warn(message: str) -> None:
    """A warning the user should see, on stderr (results stay alone on stdout)."""
    print(f"Warning: {message}", file=sys.stderr, flush=True)


def os_error_line(error: OSError) -> str:
    """An OSError as kit's one line: the path(s) and the system's reason (disk full, read-only, permission…)."""
    where = " → ".join(str(f) for f in (error.filename, error.filename2) if f is not None)
    reason = error.strerror or str(error) or type(error).__name__
    return f"{where}: {reason}" if where else reason


_STAGES: list[str] = []  # what kit is doing now, innermost last


@contextmanager
def stage(what: str):
    """Name a step (`reading the data folder`, `writing the report`): an error kit did not foresee carries the
    innermost step it escaped from, for the CLI's last-resort line."""
    _STAGES.append(what)
    try:
        yield
    except Exception as e:
        if not hasattr(e, "kit_stage"):
            try:
                e.kit_stage = what
            except (AttributeError, TypeError):  # an exception type without a __dict__
                pass
        raise
    finally:
        _STAGES.pop()


def doing(error: BaseException | None = None) -> str:
    what = getattr(error, "kit_stage", None) or (_STAGES[-1] if _STAGES else None)
    return f"while {what}" if what else "kit stopped"
