"""Resuming an interrupted run: what the run folder allows, the settings it was trained with, the same data."""

from __future__ import annotations

import shlex
from dataclasses import asdict
from pathlib import Path

from .checkpoints import read_progress
from .config import Config
from .errors import ConfigError, RunError
from .runs import (
    METRICS_FILE,
    RUN_INFO_FILE,
    lock_run_dir,
    read_config,
    read_json,
    read_metrics,
    remove_partial_files,
)
from .validation import ValidationReport

RESUME_IGNORES = {"name", "runs_dir", "data"}  # where things are, not what is trained


def resume_config(run_dir, given: dict) -> Config:
    """The run's stored config; any setting given again must equal it (the data is checked by fingerprint)."""
    run_dir = Path(run_dir)
    stored = asdict(read_config(run_dir))
    changed = [f"--{k.replace('_', '-')} {v} (the run has {stored.get(k)})" for k, v in given.items()
               if v is not None and k not in RESUME_IGNORES and k in stored and stored[k] != v]
    if changed:
        raise ConfigError(f"{run_dir}: cannot resume with a changed config: {'; '.join(changed)}; "
                          "start a new run instead")
    if given.get("data"):
        stored["data"] = given["data"]
    stored.update(name=run_dir.name, runs_dir=str(run_dir.parent))
    return Config(**stored).validate()


def check_resumable(config: Config) -> None:
    """Refuse what the run folder alone rules out, before the data folder is read and validated."""
    run_dir = Path(config.runs_dir) / config.name
    metrics = read_metrics(run_dir)
    if read_json(run_dir / RUN_INFO_FILE).get("ended") and not metrics.get("interrupted"):
        raise RunError(f"{run_dir}: the run already finished; nothing to resume")
    if not has_checkpoint(run_dir):
        raise RunError(f"{run_dir}: stopped before its first checkpoint; nothing to resume (train again with --force)")


def has_checkpoint(run_dir: Path) -> bool:
    """Whether a run (or, for k-fold runs, any of its folds) saved something to resume from."""
    return read_progress(run_dir) is not None or any(read_progress(fold) is not None or
                                                     (fold / METRICS_FILE).is_file()
                                                     for fold in run_dir.glob("fold*"))


def resume_hint(run_dir: Path, command: str = "train") -> str:
    """The one spelling of the resume command, for the interrupt message and the Interrupted error."""
    return f"Resume with: kit {command} --resume {shlex.quote(str(run_dir))}"


def reopen_for_resume(config: Config, report: ValidationReport) -> Path:
    """Lock an interrupted run folder again after checking it was trained on this very data (_check_resumable
    has checked the rest)."""
    run_dir = Path(config.runs_dir) / config.name
    original = read_json(run_dir / RUN_INFO_FILE).get("data_fingerprint")
    if original and original != report.fingerprint:
        raise RunError(f"{run_dir}: cannot resume: the data in {config.data} changed since the run started "
                       f"(fingerprint {report.fingerprint[:12]}…, the run has {original[:12]}…)")
    lock_run_dir(run_dir)
    remove_partial_files(run_dir)
    return run_dir
