"""kit from Python (notebooks, scripts): the command line's twin. The same settings (keyword arguments named like
the options: epochs=1, time_budget="5m", image_size=16), the same checks and the same library functions as
`kit validate`, `kit train`, `kit run`, `kit make-submission`, `kit predict` and `kit score`; errors are
kit.KitError subclasses with kit's one-line messages, never SystemExit.

    import kit
    report = kit.validate("data")
    run = kit.run("data", time_budget="5m")
    run.score, run.submission, run.predict("data/test")

Importing kit stays light: TensorFlow loads (quietly, through kit.quiet) only when a model is trained or used.
"""

from __future__ import annotations

import difflib
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import fields
from html import escape
from pathlib import Path

from .errors import ConfigError, DataError, KitError, image_error_in, os_error_line

# Keyword arguments that are not Config fields: the CLI's other options, under the same names.
EXTRA_SETTINGS = {"config": "a TOML/YAML settings file (--config)", "dataset": "a built-in dataset (--dataset)",
                  "recipe": "a tutorial recipe (--recipe)", "resume": "an interrupted run folder (--resume)",
                  "multi_label": "the labels are tags (--multi-label)", "quiet": "no progress lines (--quiet)"}


@contextmanager
def _kit_errors():
    """What the CLI turns into `Error: …` arrives as a KitError here too (an OSError, an image that broke
    inside tf.data), so a notebook can catch one exception type."""
    try:
        yield
    except KitError:
        raise
    except OSError as e:
        raise KitError(os_error_line(e)) from None
    except Exception as e:
        error = image_error_in(e)
        if error is None:
            raise
        raise error from None


def _progress(quiet: bool):
    """kit's progress lines go to stderr (a notebook shows them under the cell), nowhere when quiet."""
    def log(message: str = "") -> None:
        if not quiet:
            print(message, file=sys.stderr, flush=True)
    log.quiet = quiet
    return log


def _settings(data, settings: dict):
    """(Config, held-out answers or None, quiet): the keyword arguments through kit.settings.assemble, exactly
    as the command line's options go; an unknown name is one line naming it and the closest known one."""
    from .config import Config, parse_duration
    from .settings import assemble

    known = {f.name for f in fields(Config)} | set(EXTRA_SETTINGS)
    for name in settings:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(f"{name}: unknown setting; {hint}settings are named like `kit train`'s options "
                              "(epochs=1, time_budget='5m', image_size=16)")
    values = {k: str(v) if isinstance(v, Path) else v for k, v in settings.items()}
    if isinstance(values.get("time_budget"), str):
        values["time_budget"] = parse_duration(values["time_budget"])
    for name in ("train_images", "test_images"):  # a list of folders, or "A,B" as on the command line
        if isinstance(values.get(name), (list, tuple)):
            values[name] = ",".join(map(str, values[name]))
    if isinstance(values.get("label_map"), dict):
        values["label_map"] = ",".join(f"{k}={v}" for k, v in values["label_map"].items())
    quiet = bool(values.pop("quiet", False))
    config_file, resume = values.pop("config", None), values.pop("resume", None)
    config, answers = assemble(str(data) if data is not None else None, config_file,
                               resume_run=str(resume) if resume else None, **values)
    return config, answers, quiet


class Validation:
    """kit.validate's answer: every problem found, .errors and .warnings (each one line naming file and row)."""

    def __init__(self, report, competition):
        self.report = report  # kit.validation.ValidationReport
        self.layout = competition.layout
        self.data = competition.root

    @property
    def errors(self) -> list:
        return self.report.errors

    @property
    def warnings(self) -> list:
        return self.report.warnings

    @property
    def ok(self) -> bool:
        """No errors: training may start (warnings are worth reading, not blocking)."""
        return not self.errors

    def summary(self) -> str:
        return self.report.summary()

    def __repr__(self) -> str:
        lines = [f"{self.data}: {self.layout} layout", self.summary()]
        lines += [f"{p.severity}: {p}" for p in self.report.problems[:20]]
        if len(self.report.problems) > 20:
            lines.append(f"… and {len(self.report.problems) - 20} more (report.errors, report.warnings)")
        lines.append(f"{len(self.errors)} error(s), {len(self.warnings)} warning(s)")
        return "\n".join(lines)


def validate(data=None, **settings) -> Validation:
    """Check a data folder before training, as `kit validate` does: every bad row named."""
    from .data import ReadOptions, load_competition
    from .validation import validate as validate_folder

    config, _, quiet = _settings(data, settings)
    with _kit_errors():
        comp = load_competition(config.data, ReadOptions.of(config))
        return Validation(validate_folder(comp, progress=not quiet), comp)


def train(data=None, **settings) -> "Run":
    """Train one model into runs/NAME/, as `kit train` does; returns the Run."""
    return _train_or_run("train", data, settings)


def run(data=None, **settings) -> "Run":
    """Validate, train, write the submission (output=…, default RUN/submission.csv) and the report, as `kit run`
    does; returns the Run, its .submission and, when the answers are known, its .held_out score."""
    return _train_or_run("run", data, settings)


def _train_or_run(command: str, data, settings: dict) -> "Run":
    from .resume import resume_hint
    from .workflow import train_and_submit

    started = time.time()  # time_budget counts from here
    force, output = bool(settings.pop("force", False)), settings.pop("output", None) if command == "run" else None
    config, answers, quiet = _settings(data, settings)
    with _kit_errors():
        outcome = train_and_submit(config, answers, command=command, output=output, force=force,
                                   log=_progress(quiet), resume=bool(settings.get("resume")), started=started)
    result = outcome.result
    if result.interrupted:
        print(f"Interrupted. {resume_hint(result.run_dir, command)} (in Python: kit.{command}(resume="
              f"{str(result.run_dir)!r}))", file=sys.stderr)
    return Run(result.run_dir)


def load_run(path, trusted=()) -> "Run":
    """A run folder (trained here, or copied from elsewhere and read-only) as a Run."""
    return Run(path, trusted=trusted)


def score(submission, answers, metric: str | None = None, positive: str = "") -> float:
    """A submission (a CSV path or a DataFrame) scored against an answer key, as `kit score` does; metric
    default accuracy."""
    import pandas as pd

    from .metrics import check_metric
    from .submission import score_submission

    metric = check_metric(metric or "accuracy")
    with _kit_errors(), tempfile.TemporaryDirectory(prefix="kit-score-") as tmp:
        if isinstance(submission, pd.DataFrame):
            path = Path(tmp) / "submission.csv"
            submission.to_csv(path, index=False)
            submission = path
        return score_submission(submission, answers, metric, positive)


class Run:
    """A trained run: its folder, score and submission, and its model's predictions. (kit.runs.Run, its .folder,
    is the folder as read for loading the model; this class is what a notebook holds.)"""

    def __init__(self, path, trusted=()):
        from .runs import Run as RunFolder

        with _kit_errors():
            self.folder = RunFolder.open(path, trusted)
        self.path = self.folder.path

    @property
    def config(self):
        return self.folder.config

    @property
    def class_names(self) -> list[str]:
        return self.folder.class_names

    @property
    def metrics(self) -> dict:
        from .runs import read_metrics

        return read_metrics(self.path)

    @property
    def metric(self) -> str:
        """The competition's metric the run was scored and its epoch chosen with."""
        metric = self.metrics.get("metric")
        return metric if isinstance(metric, str) else self.config.metric if self.config.metric != "auto" else \
            "accuracy"

    @property
    def score(self) -> float | None:
        """The run's metric on its validation split (out-of-fold for k-fold runs)."""
        from .runs import finite_number

        metrics = self.metrics
        return finite_number(metrics.get("val_score", metrics.get("val_accuracy")))

    @property
    def interrupted(self) -> bool:
        return bool(self.metrics.get("interrupted"))

    @property
    def held_out(self) -> float | None:
        """The submission's score against the held-out answers, when `kit run` knew them (built-in datasets)."""
        from .reports import _submission_info

        held = _submission_info(self.path).get("held_out")
        return float(held["score"]) if isinstance(held, dict) and held.get("score") is not None else None

    @property
    def submission_path(self) -> Path | None:
        """Where this run's latest submission is: the one kit run or make_submission wrote, else None."""
        from .reports import _submission_info

        if getattr(self, "_submission", None):
            return self._submission
        path = _submission_info(self.path).get("path")
        return Path(path) if path and Path(path).is_file() else None

    @property
    def submission(self):
        """The submission as a pandas DataFrame (ids as text, as written), or None when none was written."""
        import pandas as pd

        path = self.submission_path
        if path is None:
            return None
        header = pd.read_csv(path, nrows=0).columns
        return pd.read_csv(path, dtype={header[0]: str}, keep_default_na=False)

    def predict(self, images, top: int | None = None):
        """A DataFrame of id, label, probability and one probability column per class (top=N: the N best
        classes instead) for a folder (read recursively), an image path, a list of paths, or an array batch of
        uint8 pixels (N×H×W or N×H×W×C; ids 0…N-1)."""
        from .predict import images_to_predict, prediction_table

        with _kit_errors(), tempfile.TemporaryDirectory(prefix="kit-predict-") as tmp:
            if _is_array(images):
                items = _array_images(images, Path(tmp))
            else:
                paths = [images] if isinstance(images, (str, Path)) else list(images)
                items = images_to_predict(paths)
            return prediction_table(self.folder, items, top=top)

    def make_submission(self, data=None, output=None, force: bool = False, tta: int = 0) -> Path:
        """Predict DATA's test images (default: the folder the run was trained on) into a checked submission CSV;
        output default RUN/submission.csv. Returns its path."""
        from .submission import make_submission

        with _kit_errors():
            result = make_submission(self.path, str(data) if data else None, output, force=force, tta=tta,
                                     trusted=self.folder.trusted)
        self._submission = result.path
        return result.path

    def report(self, height: int = 900):
        """The whole report.html, shown inline in a notebook (in a frame of its own, so its styles stay in it)."""
        from .runs import REPORT_HTML

        return _Html(f"<iframe srcdoc=\"{escape((self.path / REPORT_HTML).read_text(encoding='utf-8'))}\" "
                     f"style='width:100%;height:{int(height)}px;border:1px solid #dde1e7'></iframe>")

    def __repr__(self) -> str:
        value = f"{self.score:.4f}" if self.score is not None else "no score"
        return f"<kit.Run {str(self.path)!r}: validation {self.metric} {value}>"

    def _repr_html_(self) -> str:
        """The report's summary card: name, model, data and the metric cards."""
        from .reports import summary_html

        return f"<div class=kit-summary><style>{SUMMARY_CSS}</style>{summary_html(self.path)}</div>"


SUMMARY_CSS = """
.kit-summary{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#1d2330}
.kit-summary h1{font-size:20px;margin:0 0 4px} .kit-summary .sub{color:#5b6474;margin-bottom:10px}
.kit-summary .cards{display:flex;gap:10px;flex-wrap:wrap}
.kit-summary .card{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:8px 14px;min-width:110px}
.kit-summary .card b{display:block;font-size:20px}
.kit-summary .card span{color:#5b6474;font-size:11px;text-transform:uppercase}
"""


class _Html:
    """HTML a notebook displays (IPython not required)."""

    def __init__(self, html: str):
        self.html = html

    def _repr_html_(self) -> str:
        return self.html


def _is_array(images) -> bool:
    return hasattr(images, "shape") and hasattr(images, "dtype")


def _array_images(batch, folder: Path) -> list[tuple[str, str]]:
    """An array batch as PNG files, so it goes through the very loader (resize, channels) training used."""
    import numpy as np
    from PIL import Image

    arr = np.asarray(batch)
    if arr.dtype != np.uint8:
        raise DataError(f"images: expected uint8 pixels 0-255, got {arr.dtype} (e.g. (x * 255).astype('uint8'))")
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[-1] not in (3, 4)):
        raise DataError(f"images: expected a batch N×H×W (gray) or N×H×W×C (C = 1, 3 or 4), got shape {arr.shape}")
    items = []
    for i, pixels in enumerate(arr):
        path = folder / f"{i}.png"
        Image.fromarray(pixels).save(path)
        items.append((str(i), str(path)))
    return items
