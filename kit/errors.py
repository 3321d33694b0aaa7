"""The one place for kit's errors: each carries a one-line message naming the file (and row)."""


class KitError(Exception):
    """Base class: the CLI prints `Error: <message>` and exits non-zero, without a traceback."""

    exit_code = 2


class DataError(KitError):
    """The data folder or one of its tables is unusable as given."""


class ImageError(DataError):
    """One image cannot be read; the message names the file."""


class RunError(KitError):
    """A run folder is missing, incomplete, already exists, or fails its integrity check."""


class SubmissionError(KitError):
    """A submission would not be accepted by the leaderboard (or would overwrite a file)."""


class ConfigError(KitError):
    """An option or config-file value is invalid."""


class Interrupted(RunError):
    """Ctrl-C stopped training before anything worth keeping was finished; a checkpoint may allow resuming."""

    exit_code = 130


def image_error_in(error: Exception) -> ImageError | None:
    """The ImageError kit's loader raised inside a tf.data pipeline, which TensorFlow re-raises as an error of its
    own whose long text holds the original's "ImageError: <message>" line; None when there is none."""
    import re

    match = re.search(r"ImageError: ([^\n]+)", str(error))
    return ImageError(match.group(1).strip()) if match else None
