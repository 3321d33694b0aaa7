"""kit: from a competition folder to a checked submission.csv in one command, or in a few lines of Python:

    import kit
    kit.validate("data")
    run = kit.run("data", time_budget="5m")

The Python API lives in kit.api and loads on first use, so `import kit` (and `kit --help`) stay fast."""

__version__ = "0.1.0"

from .errors import (  # noqa: E402 - light: the exceptions a caller catches
    ConfigError,
    DataError,
    ImageError,
    KitError,
    OutputError,
    RunError,
    SubmissionError,
)

_API = ("validate", "train", "run", "load_run", "score", "Run", "Validation")
__all__ = [*_API, "KitError", "ConfigError", "DataError", "ImageError", "OutputError", "RunError", "SubmissionError",
           "__version__"]


def __getattr__(name):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'kit' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_API))
