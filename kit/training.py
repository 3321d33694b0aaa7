"""Train one run: validate the folder, resolve the settings, split, open the run folder, fit (or k folds of
fits), and leave a self-describing runs/NAME/. The fitting itself is kit.fit's; resuming is kit.resume's."""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .accelerate import is_chief, precision
from .answers import Answer, checked_label_map, decide_answer
from .config import Config, resolve_augment
from .data import MIN_IMAGES_PER_CLASS, Competition, ReadOptions, load_competition, strata
from .errors import ConfigError, DataError, Interrupted, OutputError, stage
from .auto import choose_auto, describe_images
from .budget import BACKBONE_SIZES, Budget, backbone_size_for_budget, plan_for_budget
from .fit import closed_form_head, feature_views, fit_skipping_broken
from .checkpoints import remove_checkpoints
from .folds import train_folds
from .models import AUTO, DEFAULT_MODEL, get_model_spec
from .outputs import inside
from .resume import check_resumable, has_checkpoint, reopen_for_resume, resume_hint
from .runs import (
    MARK,
    RUN_INFO_FILE,
    SKIPPED_FILE,
    VALIDATION_FILE,
    create_run_dir,
    environment_info,
    new_run_name,
    read_json,
    release_run_dir,
    write_json,
    write_run_settings,
    write_skipped,
)
from .submission import run_tta
from .transfer import BACKBONE_FILE, check_backbone_file, default_backbone_size, input_side, is_transfer
from .validation import ValidationReport, validate, without_bad_training_images


@dataclass
class TrainResult:
    run_dir: Path
    config: Config
    metrics: dict
    interrupted: bool = False
    competition: Competition | None = None  # the folder as read and validated (kit run predicts its test set)


class ValidationFailed(DataError):
    """Raised when a data folder has errors: the message shows the first and how to see all."""

    def __init__(self, report: ValidationReport, data: str):
        self.report = report
        errors = report.errors
        more = f" (and {len(errors) - 1} more; run `kit validate {data}` to list them)" if len(errors) > 1 else ""
        super().__init__(f"{errors[0]}{more}")


def load_and_validate(config: Config, progress: bool = False) -> tuple[Competition, ValidationReport, list]:
    """Read and check the folder; with on_bad_image="skip", without its bad training images instead of failing."""
    comp = load_competition(config.data, ReadOptions.of(config))
    report = validate(comp, progress=progress)
    skipped = []
    if config.on_bad_image == "skip":
        comp, report, skipped = without_bad_training_images(comp, report)
    if report.errors:
        raise ValidationFailed(report, config.data)
    return comp, report, skipped


def resolve_config(config: Config, report: ValidationReport, budget: Budget | None = None,
                   sizes: tuple[int, int] = (0, 0)) -> Config:
    """Fill in what the data decides: image size (median side, 28..224; for a backbone kit.transfer's
    default_backbone_size), channels (1 if all grayscale), what --model auto means (baseline; with a time budget,
    what fits in it) and what --augment auto means (by the model's kind and how many epochs it will train).
    For photos, --model auto is a pretrained backbone when weights are within reach (kit.auto.choose_auto)."""
    config = choose_auto(config, report)
    if config.backbone_file:
        config = replace(config, model=BACKBONE_FILE)
    transfer = is_transfer(config.model)
    if transfer:  # a new head on pretrained features, at the scale the backbone learned its objects
        default_size = default_backbone_size(config.model, config.backbone_file, report.median_size)
    else:
        default_size = int(min(224, max(28, report.median_size)))
    image_size = config.image_size or default_size
    fixed = config.backbone_file and input_side(config.backbone_file)  # a file's own input side is not chosen
    asked = config
    if transfer:  # the views of the frozen phase follow from the augmentation (kit.fit.feature_views)
        augment = resolve_augment(config.augment, True, config.epochs, photos=describe_images(report)[0])
        config = replace(config, augment=augment, feature_views=feature_views(replace(config, augment=augment)),
                         fine_tune_epochs=fine_tune_epochs(config, report))
    if budget and transfer and not config.image_size and not fixed:  # the size whose frozen phase fits the budget
        config, image_size = _backbone_size_for_budget(config, budget, image_size, sizes,
                                                       len(report.class_counts), asked)
    channels = config.channels or report.channels
    model, epochs = config.model, config.epochs
    if budget and not transfer and AUTO in (model, config.augment):  # what fits in the budget decides them
        if config.folds >= 2:  # judged by what the first fold's share allows
            budget = budget.for_fold(0, config.folds, sizes[1])
        with precision(config.mixed_precision, DEFAULT_MODEL if model == AUTO else model):  # the fit's arithmetic
            model, fit = plan_for_budget(budget, model, image_size, channels, config.batch_size, *sizes)
        epochs = min(epochs, math.floor(fit))
    model = DEFAULT_MODEL if model == AUTO else model
    if config.model == AUTO and config.auto_reason:  # kit's CNN: the reason ends with the one chosen
        config = replace(config, auto_reason=f"{config.auto_reason} → {model}")
    optimizer, learning_rate = ("adamw", 1e-3) if transfer else (get_model_spec(model).optimizer,
                                                                  get_model_spec(model).learning_rate)
    return replace(config, data=os.path.abspath(config.data), model=model, image_size=image_size, channels=channels,
                   name=config.name or new_run_name(model), augment=resolve_augment(config.augment, transfer, epochs),
                   optimizer=config.optimizer or optimizer, learning_rate=config.learning_rate or learning_rate)


# A backbone is fine-tuned by default only from this many training images per class (the median class). With kit's
# CPU recipe (the closed-form head at 288 px, then 3 epochs of the top 30 layers at 1e-4) fine-tuning never beat the
# head on held-out photos (RESULTS.md, 2026-12-03): the 17-class flower competition, 48 per class (every epoch
# scored under the head); cats vs dogs 150 per class 0.984 both, 400 per class 0.979 fine-tuned against 0.987, 1,000
# per class the head kept on validation (0.988); the red team's Cassava-like set 0.793 against 0.812 — and each
# epoch cost 1-5 minutes. Nothing here measured it above 1,000 per class; --fine-tune-epochs N fine-tunes anyway.
FINE_TUNE_FROM_PER_CLASS = 2000
DEFAULT_FINE_TUNE_EPOCHS = 3


def fine_tune_epochs(config: Config, report: ValidationReport) -> int:
    """--fine-tune-epochs, by default DEFAULT_FINE_TUNE_EPOCHS when the median class has FINE_TUNE_FROM_PER_CLASS
    training images or more, else 0."""
    if config.fine_tune_epochs >= 0:
        return config.fine_tune_epochs
    return DEFAULT_FINE_TUNE_EPOCHS if median_class_size(report) >= FINE_TUNE_FROM_PER_CLASS else 0


def median_class_size(report: ValidationReport) -> int:
    """The training images of the median class (the lower one of an even number of classes: of two, the smaller,
    so 2,000 benign and 40 malignant photos are not a set of 2,000 per class)."""
    counts = sorted(report.class_counts.values()) if report.class_counts else [0]
    return counts[(len(counts) - 1) // 2]


def fine_tune_line(epochs: int, report: ValidationReport, budget: bool = False) -> str:
    """What the default fine-tuning will be, and why, in one line of the run's output."""
    median = median_class_size(report)
    if epochs:
        return (f"Fine-tuning: {epochs} epoch(s) after the head{', as far as the time budget allows' if budget else ''}"
                f" (median class {median} training images)")
    return (f"Fine-tuning: none (median class {median} training images, under {FINE_TUNE_FROM_PER_CLASS}): the head "
            "on the frozen backbone is the model; --fine-tune-epochs N to fine-tune anyway")


def say_what_validation_saw(report: ValidationReport, log, shown: int = 10) -> None:
    """Validation's summary line and its first warnings: never hidden behind a training run."""
    log(report.summary_line())
    for problem in report.problems[:shown]:
        log(f"  {problem.severity}: {problem}")
    if len(report.problems) > shown:
        log(f"  … and {len(report.problems) - shown} more (all in the run's {VALIDATION_FILE})")


def _backbone_size_for_budget(config: Config, budget: Budget, largest: int, sizes: tuple[int, int],
                              classes: int, asked: Config) -> tuple[Config, int]:
    """(config, image size) of a backbone run under --time-budget (kit.budget.backbone_size_for_budget); when no
    size fits with the photos' mirror views, without them (unless you asked for the augmentation or the views);
    when none fits at all, the smallest size anyway, saying why (auto_reason): kit's CNNs from scratch are no
    better use of so short a budget on photos."""
    if config.folds >= 2:  # judged by what the first fold's share allows
        budget = budget.for_fold(0, config.folds, sizes[1])
    size, seconds = backbone_size_for_budget(budget, config, largest, *sizes, views=feature_views(config),
                                             classes=classes)
    if size:
        return config, size
    if feature_views(config) > 1 and asked.augment == "auto" and not asked.feature_views:
        config = replace(config, augment="light", feature_views=1)  # one view, no mirror at test time: half the work
        size, seconds = backbone_size_for_budget(replace(budget, predict_images=budget.predict_images // 2), config,
                                                 largest, *sizes, views=1, classes=classes)
        if size:
            return config, size
    if config.auto_reason:
        left = max(0.0, budget.deadline - time.time())
        config = replace(config, auto_reason=f"{config.auto_reason}; read at {min(BACKBONE_SIZES)} px with "
                         f"{feature_views(config)} view(s) although its features may take about {seconds:.0f} s of "
                         f"the {left:.0f} s left: kit's CNNs from scratch score near chance on photos in so little")
    return config, min(BACKBONE_SIZES)


def split_train_validation(comp: Competition, config: Config) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The folder's own validation/ split when it has one, else a seeded stratified split."""
    if comp.validation is not None:
        return comp.train, comp.validation
    if "group" in comp.train and config.validation_split > 0:  # --group-col: whole groups on one side
        return _grouped_split(comp, config)
    from sklearn.model_selection import (
        train_test_split,  # scikit-learn loads slowly: only when splitting
    )

    key = strata(comp.train["label"], comp.tag_separator)  # the label, or each image's rarest tag
    counts = key.value_counts()
    single = key.map(counts) < MIN_IMAGES_PER_CLASS  # kept in training only (one image each)
    splittable, key = comp.train[~single], key[~single]
    classes = int((counts >= MIN_IMAGES_PER_CLASS).sum())
    n_val = math.ceil(config.validation_split * len(splittable))
    if classes == 0:
        raise DataError(f"{comp.train_file}: no class has two images, so nothing can be held out for validation; "
                        "add images, or give a validation/ folder")
    if n_val < classes or len(splittable) - n_val < classes:  # many small classes: stratifying is impossible
        train, val = _split_keeping_every_class(splittable, key, n_val, config.seed)
    else:
        train, val = train_test_split(splittable, test_size=n_val, random_state=config.seed, stratify=key)
    train = pd.concat([train, comp.train[single]])
    if NEAR_DUPLICATE_GROUP in comp.train:
        together = _near_duplicates_together(train, val)
        if len(together[1]) and set(together[1]["label"]) >= set(val["label"]):  # else the plain split
            train, val = together
    return train.reset_index(drop=True), val.reset_index(drop=True)


def _grouped_split(comp: Competition, config: Config) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The first of round(1 / validation_split) stratified group folds as validation: every value of --group-col
    (a driver, a patient) on one side only, so validation scores images of people training never saw."""
    import warnings

    from sklearn.model_selection import StratifiedGroupKFold

    groups = comp.train["group"].to_numpy()
    count = len(pd.unique(groups))
    if count < 2:
        raise DataError(f"--group-col: {comp.train_file} has one group only, so no group can be held out for "
                        "validation; drop --group-col or give a validation/ folder")
    k = int(min(count, max(2, round(1 / config.validation_split))))
    key = strata(comp.train["label"], comp.tag_separator, k)
    key = key.where(key.map(key.value_counts()) >= k, "")  # classes too small to stratify: stratified together
    labels = comp.train["label"].to_numpy()
    with warnings.catch_warnings():  # sklearn's note that a stratum has fewer rows than folds
        warnings.simplefilter("ignore", UserWarning)
        folds = list(StratifiedGroupKFold(k, shuffle=True, random_state=config.seed).split(key, key, groups))
    # the first fold that leaves every class a training image (one patient may hold all of a rare class)
    train, val = next(((t, v) for t, v in folds if comp.tag_separator or set(labels[t]) == set(labels)), folds[0])
    return comp.train.iloc[train].reset_index(drop=True), comp.train.iloc[val].reset_index(drop=True)


NEAR_DUPLICATE_GROUP = "near_duplicate_group"  # the column kit.training adds: near-duplicates share a number
MAX_KEPT_TOGETHER = 5  # larger groups are look-alikes rather than copies (`kit doctor` still lists them)


def _near_duplicates_together(train: pd.DataFrame, val: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Near-duplicates split between training and validation all go where the group's first row went: a copy of a
    training image in validation would make the validation score lie."""
    both = pd.concat([train.assign(_val=False), val.assign(_val=True)]).sort_index(kind="stable")
    side = both.groupby(NEAR_DUPLICATE_GROUP, sort=False)["_val"].transform("first")
    return both[~side].drop(columns="_val"), both[side].drop(columns="_val")


def with_near_duplicate_groups(comp: Competition, report: ValidationReport, log=print) -> Competition:
    """The competition with a near-duplicate group per training row (kit.doctor), so that the split and the folds
    keep near-duplicates on one side; unchanged when there are none (or --group-col gives the groups)."""
    from .doctor import duplicate_group_column

    if comp.validation is not None or "group" in comp.train:
        return comp
    groups = duplicate_group_column(comp.train, report)
    if groups is None:
        return comp
    sizes = pd.Series(groups).value_counts()
    large = sizes.index[sizes > MAX_KEPT_TOGETHER]
    if len(large):  # a crowd of look-alikes (blank scans, one pattern), not copies of one picture: not forced
        groups = np.where(np.isin(groups, large), -1 - np.arange(len(groups)), groups)
    copies = int(len(groups) - len(set(groups)))
    if copies == 0:
        return comp
    log(f"Near-duplicates: {copies} training image(s) are near-copies of others; each group stays on one side of "
        "the validation split (and in one fold)" + (f"; {len(large)} larger group(s) of look-alikes are not kept "
                                                     "together" if len(large) else ""))
    return replace(comp, train=comp.train.assign(**{NEAR_DUPLICATE_GROUP: groups}))


def _split_keeping_every_class(table: pd.DataFrame, key: pd.Series, n_val: int, seed: int
                               ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded random split of about n_val rows that leaves every class (key) at least one training image (for
    sets with more classes than a stratified split can place on both sides, e.g. thousands of two-image classes)."""
    order = key.sample(frac=1.0, random_state=seed)
    left = order.value_counts().to_dict()
    chosen = []
    for index, label in order.items():
        if len(chosen) == n_val:
            break
        if left[label] > 1:
            left[label] -= 1
            chosen.append(index)
    return table.drop(index=chosen), table.loc[chosen]


def train(config: Config, force: bool = False, log=print, resume: bool = False, command: str = "train",
          deadline: float | None = None) -> TrainResult:
    """Validate the data, train the configured model, and write everything to runs/NAME/.

    With resume, config must be the run's own (see kit.resume.resume_config) and training continues from its
    checkpoint. `command` (train or run) is for the resume hint, and `run` also needs a test set to predict.
    deadline: when the command must have ended (--time-budget; a resumed run trains the epochs it planned).
    """
    _refuse_early(config, resume)
    comp, report, skipped = load_and_validate(config, progress=not getattr(log, "quiet", False))
    say_what_validation_saw(report, log)
    if command == "run" and comp.test is None:  # kit run ends with a submission: refuse now, not after training
        raise DataError(f"{config.data}: no test table, sample submission or test folder, so no submission can be "
                        "written; use `kit train`, or pass --test-csv/--sample/--test-images")
    answer = decide_answer(comp.sample, comp.class_names, config, comp.sample_file, comp.tag_separator)
    checked_label_map(config, comp.class_names, answer)  # both refused before the near-duplicate search
    comp = with_near_duplicate_groups(comp, report, log)
    split = _split_for(comp, config, log)  # fails before a run folder exists
    base = (len(split[1]) if split else 0) + (len(comp.test) if command == "run" else 0)
    predicted = base
    if describe_images(report)[0] and (config.model == AUTO or is_transfer(config.model) or config.backbone_file):
        predicted *= 2  # a backbone on photos tries the mirror view too (kit.submission.run_tta)
    budget = Budget(deadline, predicted) if deadline and not resume else None
    asked = config
    config = replace(resolve_config(config, report, budget, _split_sizes(comp, config, split)),
                     submission=answer.kind, positive=answer.positive, tag_separator=answer.separator,
                     metric=_metric(config, answer))
    if budget and not run_tta(config) and budget.predict_images > base:  # no mirror views after all
        budget = replace(budget, predict_images=base)
    guessed = asked.metric == AUTO and answer.kind == "probability"  # AUC (Cactus) or log loss (Redux)? not in files
    log(f"Submission: {answer.describe()}; metric {config.metric}"
        + (" (--metric log_loss if the leaderboard scores log loss)" if guessed else ""))
    if config.auto_reason and not resume:
        log(f"Model: {config.auto_reason}")
    if is_transfer(config.model) and asked.fine_tune_epochs < 0 and not resume:
        log(fine_tune_line(config.fine_tune_epochs, report, budget is not None))
    if resume:
        run_dir = reopen_for_resume(config, report)
    else:
        run_dir = create_run_dir(config.runs_dir, config.name, force) if is_chief() else _worker_dir()
    try:
        return _train_in(run_dir, config, comp, report, skipped, split, log, resume, budget)
    except Interrupted as e:
        raise Interrupted(f"{e}; " + (resume_hint(run_dir, command) if has_checkpoint(run_dir) else "nothing to keep")
                          ) from None
    finally:
        release_run_dir(run_dir)


def _split_for(comp: Competition, config: Config, log) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The validation split of a single run (None for k-fold), said in one line when --group-col shapes it."""
    if config.folds >= 2:
        return None
    split = split_train_validation(comp, config)
    if "group" in split[1] and comp.validation is None:
        log(f"Validation: {split[1]['group'].nunique()} of {comp.train['group'].nunique()} groups of --group-col "
            f"{config.group_col} held out whole ({len(split[1])} images)")
    counts = split[1]["label"].value_counts()
    if not comp.tag_separator and 2 <= len(comp.class_names) <= SMALL_VALIDATION_CLASSES and len(counts) and (
            len(counts) < len(comp.class_names) or counts.min() < SMALL_VALIDATION_COUNT):
        rare = min(comp.class_names, key=lambda c: counts.get(c, 0))
        log(f"Note: validation holds {counts.get(rare, 0)} image(s) of '{rare}' (of {len(split[1])}): its scores, "
            "and what is chosen by them (the best epoch, TTA), are noisy; --folds 5 scores every image")
    return split


# A validation split with fewer images than this of one of a few classes is said to be noisy (a 2% positive class:
# 4 positives in the red team's melanoma set, every epoch tied at AUC 1.0).
SMALL_VALIDATION_COUNT, SMALL_VALIDATION_CLASSES = 5, 10


def _split_sizes(comp: Competition, config: Config, split) -> tuple[int, int]:
    """(training, validation) images of one fit: the split's, or one fold's."""
    if split:
        return len(split[0]), len(split[1])
    held_out = len(comp.train) // max(1, config.folds)
    return len(comp.train) - held_out, held_out


def _metric(config: Config, answer: Answer) -> str:
    """The metric (the answer kind's when auto); what multi-label training cannot do is refused here too."""
    if answer.kind == "tags":
        for option, value in (("--class-weight", config.class_weight), ("--sampling", config.sampling)):
            if value != "none":
                raise ConfigError(f"{option} {value}: not for tags (multi-label); each tag's loss is its own")
    return config.metric if config.metric != "auto" else answer.default_metric()


def _refuse_early(config: Config, resume: bool) -> None:
    """What the settings alone rule out, refused before the data folder is read."""
    if resume:
        check_resumable(config)
    if config.backbone_file:  # a model file kit did not write fails before any work, unless trusted
        check_backbone_file(config.backbone_file, (config.trust_model,))
    elif not is_transfer(config.model) and config.model != AUTO:
        get_model_spec(config.model)  # an unknown model fails before any work
    if config.time_budget and config.strategy in ("multiworker", "tpu"):
        raise ConfigError("--time-budget: for training on this machine so far (not yet on several machines)")
    if config.time_budget and (is_transfer(config.model) or config.backbone_file) and not closed_form_head(config):
        raise ConfigError("--time-budget with a backbone: for kit's pooled head fitted on cached features (the "
                          "default), not --head flatten or --no-feature-cache")
    for option, folder in (("--runs-dir", config.runs_dir), ("--cache-dir", config.cache_dir)):
        if folder and config.data and inside(folder, config.data):
            raise OutputError(f"{option} {folder}: inside the data folder {config.data}; kit never writes there, so "
                              f"choose a folder outside it")


@stage("training")
def _train_in(run_dir: Path, config: Config, comp: Competition, report: ValidationReport, skipped: list, split,
              log, resume: bool = False, budget: Budget | None = None) -> TrainResult:
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S")
    run_info = {**MARK, "config": config.__dict__, "data_fingerprint": report.fingerprint, "seed": config.seed,
                "started": started_at}
    if resume:
        earlier = read_json(run_dir / RUN_INFO_FILE)
        run_info = {**run_info, "started": earlier.get("started", started_at),
                    "resumed": earlier.get("resumed", []) + [started_at]}
    write_json(run_dir / RUN_INFO_FILE, run_info)
    write_run_settings(run_dir, config, comp.class_names)
    write_json(run_dir / VALIDATION_FILE, report.seen())
    if skipped:
        write_skipped(run_dir, [(p.file, p.row, p.message) for p in skipped])
        log(f"Skipping {len(skipped)} bad training image(s); listed in {run_dir / SKIPPED_FILE}")
    if config.folds >= 2:
        result = train_folds(config, comp, run_dir, log, resume, budget)
    else:
        result = fit_skipping_broken(config, comp.class_names, *split, run_dir, log, resume=resume, budget=budget)
    write_json(run_dir / RUN_INFO_FILE, {**run_info, **environment_info(), "ended": time.strftime("%Y-%m-%dT%H:%M:%S")})
    if not result.interrupted and is_chief():  # finished: nothing left to resume
        remove_checkpoints(run_dir)
    return TrainResult(run_dir=run_dir, config=config, metrics=result.metrics, interrupted=result.interrupted,
                       competition=comp)


def _worker_dir() -> Path:
    """Non-chief workers write their copy somewhere harmless (KIT_WORKER_DIR, else a temporary folder)."""
    if os.environ.get("KIT_WORKER_DIR"):
        path = Path(os.environ["KIT_WORKER_DIR"])
        path.mkdir(parents=True, exist_ok=True)
        return path
    return Path(tempfile.mkdtemp(prefix="kit-worker-"))
