"""`kit train` and `kit run` as one library function, which the CLI and the Python API (kit.api) both call:
train into runs/NAME/, then (run) write the submission, score it when the answers are known, and record both
in the run folder so that its report shows them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .config import Config
from .runs import SUBMISSION_INFO_FILE, atomic_write, write_json

TEST_ANSWERS_FILE = "test_answers.csv"  # a labelled test folder's answers, written to score the submission


@dataclass
class Outcome:
    """What `kit train` / `kit run` produced: the training result, and for run the submission and its score."""

    result: object  # kit.training.TrainResult
    submission: object = None  # kit.submission.SubmissionResult, once written
    answers: Path | None = None  # the held-out answer key, when one is known
    held_out: float | None = None  # the submission's score against it, with the run's metric


def train_and_submit(config: Config, answers=None, *, command: str = "run", output=None, force: bool = False,
                     log=print, resume: bool = False, started: float | None = None, on_trained=None) -> Outcome:
    """Train (command "train"), or train and write a checked submission (command "run"). `started`: when the
    time budget began (default now); `on_trained(result)` is called as soon as training ends (the CLI prints it
    there). An interrupted or non-chief run returns before the submission."""
    from .training import train

    started = started or time.time()
    if command == "run" and output:  # refused before training, not after
        from .outputs import check_output

        check_output(output, "--output", force, [config.data])
    result = train(config, force=force, log=log, resume=resume, command=command,
                   deadline=started + config.time_budget if config.time_budget else None)
    outcome = Outcome(result)
    if on_trained:
        on_trained(result)
    if command != "run" or result.interrupted or result.metrics.get("worker"):
        return outcome
    from .submission import make_submission, run_tta, score_submission

    tta = run_tta(result.config)
    outcome.submission = make_submission(result.run_dir, config.data, output, force=force, tta=tta,
                                         log=log if tta else None, competition=result.competition)
    if not answers:  # a labelled test table (Kaggle's Fashion-MNIST CSVs) is an answer key too
        from .sources import answer_key

        answers = answer_key(config.data, config.follow_symlinks)
    if not answers and "label" in result.competition.test:  # labelled test folders (Intel's seg_test/<class>/)
        answers = _test_folder_answers(result.run_dir, result.competition, outcome.submission.columns)
    if answers:  # a built-in dataset, or a labelled test table: the held-out answers are known
        outcome.answers = Path(answers)
        outcome.held_out = score_submission(outcome.submission.path, answers, result.config.metric,
                                            result.config.positive)
    record_submission(result.run_dir, outcome)
    return outcome


def _test_folder_answers(run_dir, comp, columns: list[str]) -> Path | None:
    """RUN/test_answers.csv: the labelled test folder's answers under the submission's header, for scoring (a
    submission of labels only, and answers naming every class: kit score refuses a label its key never uses)."""
    if len(columns) != 2 or not set(comp.test["label"]) >= set(comp.class_names):
        return None
    path = Path(run_dir) / TEST_ANSWERS_FILE
    with atomic_write(path, newline="", encoding="utf-8") as f:
        comp.test[["id", "label"]].set_axis(columns, axis=1).to_csv(f, index=False)
    return path


def record_submission(run_dir, outcome: Outcome) -> None:
    """RUN/submission.json (where the submission went, its rows, the held-out score), then report.html again so
    that it shows them."""
    from .reports import write_html

    sub = outcome.submission
    write_json(Path(run_dir) / SUBMISSION_INFO_FILE, {
        "path": str(Path(sub.path).resolve()), "rows": sub.rows, "columns": sub.columns, "kind": sub.kind,
        "held_out": None if outcome.held_out is None else {
            "metric": outcome.result.config.metric, "score": outcome.held_out, "answers": str(outcome.answers)}})
    write_html(run_dir)
