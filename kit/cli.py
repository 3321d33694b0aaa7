"""The `kit` command: parses options, calls one library function, prints its result. Nothing imports this."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from . import __version__
from .config import parse_duration
from .errors import KitError, image_error_in, one_line, os_error_line
from .metrics import check_metric


class KitGroup(click.Group):
    """Turns KitError into `Error: …` and a non-zero exit, without a traceback unless --debug."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KitError as e:
            if ctx.params.get("debug"):
                raise
            click.echo(f"Error: {one_line(str(e))}", err=True)
            ctx.exit(e.exit_code)
        except OSError as e:  # the operating system said no: disk full, read-only, permission denied, …
            if ctx.params.get("debug"):
                raise
            click.echo(f"Error: {os_error_line(e)}", err=True)
            ctx.exit(2)
        except Exception as e:  # an image that broke inside tf.data, where a KitError arrives wrapped
            error = image_error_in(e)
            if ctx.params.get("debug") or (error is None and not type(e).__module__.startswith("tensorflow")):
                raise
            click.echo(f"Error: {error or _tensorflow_line(e)}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:  # the second Ctrl-C of a training run, or any Ctrl-C elsewhere
            click.echo("\nAborted (files kit writes are replaced atomically, so none is left half-written).", err=True)
            ctx.exit(130)


def _tensorflow_line(error: Exception) -> str:
    """A TensorFlow error kit did not foresee: its first line, never a traceback (--debug shows it)."""
    first = (str(error).strip() or type(error).__name__).splitlines()[0][:300]
    return f"TensorFlow: {one_line(first)} (run with --debug for the full report)"


@click.group(cls=KitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kit")
@click.option("--debug", is_flag=True, help="Show full tracebacks and TensorFlow's own log lines.")
@click.option("--quiet", "-q", is_flag=True, help="Print only results and errors (no progress).")
@click.pass_context
def cli(ctx, debug, quiet):
    """kit: image-classification competitions, from data folder to submission.csv.

    Results go to stdout; progress, warnings and errors to stderr.

    \b
    Example:
      kit validate sample_data
      kit run sample_data
      kit --quiet run sample_data | tee results.txt
    """
    import os

    if debug:
        os.environ["KIT_DEBUG"] = "1"  # read by kit.quiet before TensorFlow loads
    ctx.obj = Progress(quiet)


class Progress:
    """Where kit's progress lines go: stderr, so that stdout holds only results; nowhere with --quiet."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet

    def __call__(self, message: str = "") -> None:
        if not self.quiet:
            click.echo(message, err=True)


def _progress() -> Progress:
    return click.get_current_context().find_root().obj or Progress()


def _choice(setting: str) -> click.Choice:
    """A setting's allowed values, from the one list kit.config checks them against."""
    from .config import CHOICES

    return click.Choice([str(c) for c in CHOICES[setting] if c not in ("", 0)])


def _parsed_by(parse):
    """A Click callback that parses an option's text with one of kit's parsers (a KitError: a bad parameter)."""
    def callback(ctx, param, value):
        try:
            return parse(value) if value is not None else None
        except KitError as e:
            raise click.BadParameter(str(e).split(": ", 1)[-1]) from None
    return callback


def _option(section: str, *decls, **attrs) -> click.Option:
    """A click.Option that knows the heading `--help` lists it under (SectionedCommand)."""
    option = click.Option(list(decls), **attrs)
    option.section = section
    return option


def _reading_params() -> list[click.Option]:
    """How to read DATA: `kit validate`, `kit train` and `kit run` take them alike."""
    return [
        _option("Data", "--label-col", help="Label column of the training table, when it is ambiguous."),
        _option("Data", "--train-csv", help="The training table (inside DATA), when kit does not find it by name."),
        _option("Data", "--test-csv", help="The test table (inside DATA)."),
        _option("Data", "--sample", help="The sample submission (inside DATA)."),
        _option("Data", "--train-images",
                help="Folder(s) inside DATA holding the training images (A,B to give several)."),
        _option("Data", "--test-images", help="Folder(s) inside DATA holding the test images (A,B to give several)."),
        _option("Data", "--label-from-name", metavar="REGEX",
                help="The class is in each training file's name: a regular expression with one group."),
        _option("Data", "--follow-symlinks/--no-follow-symlinks", default=None,
                help="Read linked files and folders that lead outside DATA (refused by default)."),
    ]


def _data_params() -> list[click.Parameter]:
    return [
        click.Argument(["data"], required=False, type=click.Path(file_okay=False)),
        _option("Data", "--dataset", help="Train on a built-in dataset instead of DATA (see `kit datasets list`)."),
        _option("Data", "--recipe", help="Start from a published tutorial's settings (see `kit recipes`)."),
        _option("Data", "--config", "config_file", type=click.Path(dir_okay=False, exists=True),
                help="TOML/YAML file with defaults (flags override it)."),
        *_reading_params(),
        _option("Data", "--on-bad-image", type=_choice("on_bad_image"),
                help="skip: train without missing/unreadable training images (listed in RUN/skipped.csv)."),
    ]


def _submission_params() -> list[click.Option]:
    return [
        _option("Submission", "--submission", type=_choice("submission"),
                help="What the submission holds; default auto: from the sample and the labels (a 0..1 value column "
                     "on two classes means P(positive), k guesses per row top-k, tags in the labels tags)."),
        _option("Submission", "--multi-label", is_flag=True, default=None,
                help="The labels are tags (space, | or ; separated): the same as --submission tags."),
        _option("Submission", "--unknown-class", metavar="CLASS",
                help="Top-k: the class meaning none of these (e.g. new_whale), placed where the top probability "
                     "is below a threshold tuned on validation."),
        _option("Submission", "--positive", metavar="CLASS",
                help="--submission probability: the class whose probability is written (default: the one the "
                     "sample names, or 1/true/yes)."),
        _option("Submission", "--clip", type=float,
                help="Probabilities are written within CLIP..1-CLIP. Default 1e-6."),
        _option("Submission", "--label-map", metavar="CLASS=VALUE,…",
                help="What the submission writes for each class, e.g. cat=0,dog=1."),
    ]


def _model_params() -> list[click.Option]:
    return [
        _option("Model", "--model", help="Model name (see `kit models`). Default (auto): for photos, a pretrained "
                "backbone when weights are within reach (docs/photos.md); else baseline, or with --time-budget the "
                "lighter small when fewer than 6 baseline epochs fit."),
        _option("Model", "--image-size", type=int, help="Square input size; default from the data (28..224)."),
        _option("Model", "--channels", type=click.Choice(["1", "3"]),
                help="1 (grayscale) or 3 (RGB); default from data."),
    ]


def _fitting_params() -> list[click.Option]:
    return [
        _option("Training", "--epochs", type=int, help="Default 10."),
        _option("Training", "--batch-size", type=int, help="Default 64."),
        _option("Training", "--learning-rate", type=float, help="Default: the model's own."),
        _option("Training", "--optimizer", type=_choice("optimizer"), help="Default: the model's own."),
        _option("Training", "--validation-split", type=float, help="Fraction held out, stratified. Default 0.2."),
        _option("Training", "--seed", type=int, help="Default 42."),
        _option("Training", "--deterministic/--no-deterministic", default=None,
                help="Seeded, deterministic TensorFlow ops (reruns give identical weights on CPU)."),
        _option("Training", "--folds", type=int,
                help="K-fold: K models, out-of-fold predictions and score. Default off."),
        _option("Training", "--group-col", help="K-fold: rows sharing this training-table column stay in one fold."),
        _option("Training", "--augment", type=_choice("augment"),
                help="Default auto: light for backbones and for runs of 30 or more epochs, else none."),
        _option("Training", "--time-budget", metavar="DURATION", callback=_parsed_by(parse_duration),
                help="Finish the whole command within this time (30s, 5m, 1h): the epochs (up to --epochs, if "
                     "given) and the learning-rate schedule are planned from the first epoch's pace."),
        _option("Training", "--early-stopping", type=int,
                help="Stop after N epochs without improvement. Default off."),
        _option("Training", "--metric", callback=_parsed_by(check_metric),
                help="The competition's metric: accuracy, f1_macro, log_loss, auc, map@K, f1 or f2 (tags); picks "
                     "the best epoch and is reported. Default: from the answer kind (auc for P(positive), "
                     "log_loss for one probability per class, map@K for top-k, f1 for tags, else accuracy)."),
        _option("Training", "--class-weight", type=_choice("class_weight"),
                help="balanced: weight the loss by inverse class frequency."),
        _option("Training", "--sampling", type=_choice("sampling"), help="balanced: draw every class equally often."),
        _option("Training", "--tensorboard/--no-tensorboard", default=None,
                help="Write TensorBoard logs to RUN/tensorboard."),
    ]


def _transfer_params() -> list[click.Option]:
    return [
        _option("Transfer learning", "--weights", help="Backbones: imagenet (default), none, or a weights file."),
        _option("Transfer learning", "--backbone-file", type=click.Path(dir_okay=False, exists=True),
                help="Your own .keras feature extractor (raw RGB 0-255 in); kit adds the head."),
        _option("Transfer learning", "--trust-model", metavar="SHA256",
                help="Load --backbone-file only if its sha256 is this (a model file can run code)."),
        _option("Transfer learning", "--fine-tune-epochs", type=int,
                help="Backbones: epochs with the top layers unfrozen. Default 3."),
        _option("Transfer learning", "--fine-tune-layers", type=int,
                help="Backbones: how many top layers to unfreeze. Default 30."),
        _option("Transfer learning", "--feature-views", type=int,
                help="Backbones: augmented views per image in the cached phase."),
        _option("Transfer learning", "--head", type=_choice("head"),
                help="Backbones: pool (default: global pooling + dropout + dense) or flatten (the flowers "
                     "tutorial's Flatten + dense)."),
        _option("Transfer learning", "--feature-cache/--no-feature-cache", default=None,
                help="Backbones: train the frozen phase on cached features (default on)."),
    ]


def _hardware_params() -> list[click.Option]:
    return [
        _option("Hardware", "--strategy", type=_choice("strategy"),
                help="tf.distribute strategy. Default auto (MirroredStrategy on >1 GPU)."),
        _option("Hardware", "--mixed-precision", type=_choice("mixed_precision"),
                help="float16 compute; auto = on GPUs with compute capability >= 7."),
        _option("Hardware", "--jit-compile/--no-jit-compile", default=None, help="XLA-compile the training step."),
        _option("Hardware", "--cache-dir", type=click.Path(file_okay=False),
                help="Keep decoded images on disk here (reused by later runs) instead of in memory."),
        _option("Hardware", "--cache-memory-gb", type=float,
                help="Decoded images beyond this size are cached on disk. Default 2."),
    ]


def _run_folder_params() -> list[click.Option]:
    return [
        _option("Run folder", "--name", help="Run name. Default: timestamp + model."),
        _option("Run folder", "--runs-dir", type=click.Path(file_okay=False), help="Where runs go. Default ./runs."),
        _option("Run folder", "--force", is_flag=True, help="Replace an existing run of the same name."),
        _option("Run folder", "--resume", "resume_run", type=click.Path(file_okay=False, exists=True),
                help="Continue an interrupted run folder from its last checkpoint (same data and settings)."),
        _option("Run folder", "--checkpoint-every", type=int,
                help="Also checkpoint every N batches (always at each epoch's end). Default off."),
    ]


TRAINING_PARAMS = (_data_params, _submission_params, _model_params, _fitting_params, _transfer_params,
                   _hardware_params, _run_folder_params)  # `kit train`'s, and `kit run`'s; None means "not given"


def _with_params(*factories):
    """Add the parameters the factories make (fresh for each command) to a command, in their order."""
    def decorate(f):
        params = [p for make in factories for p in make()]
        f.__click_params__ = getattr(f, "__click_params__", []) + params[::-1]  # Click reverses what it collects
        return f
    return decorate


class SectionedCommand(click.Command):
    """A command whose options `--help` lists under their sections' headings (the rest under "Other")."""

    def format_options(self, ctx, formatter):
        sections: dict[str, list] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx) if isinstance(param, click.Option) else None
            if record:
                sections.setdefault(getattr(param, "section", "Other"), []).append(record)
        for title in sorted(sections, key=lambda t: t == "Other"):  # "Other" (help) last, the rest as declared
            with formatter.section(title):
                formatter.write_dl(sections[title])


def _settings(data, config_file, flags: dict):
    from .settings import assemble

    return assemble(data, config_file, **flags)


@cli.command("runs")
@click.argument("runs_dir", metavar="[DIR]", default="runs", type=click.Path(file_okay=False))
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV instead of a table.")
def runs_table(runs_dir, as_csv):
    """A leaderboard of your runs: by metric, the best validation score first.

    \b
    Example:
      kit runs
      kit runs runs --csv > runs.csv
    """
    import csv as csv_module

    from .runs import RUN_TABLE_COLUMNS, list_runs

    rows = list_runs(runs_dir)
    if as_csv:
        writer = csv_module.DictWriter(sys.stdout, fieldnames=RUN_TABLE_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return
    if not rows:
        click.echo(f"No runs in {runs_dir}/")
        return
    cells = [[f"{r[c]:.4f}" if c in ("score", "val_accuracy") and r[c] is not None else str(r[c])
              for c in RUN_TABLE_COLUMNS] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(RUN_TABLE_COLUMNS)]
    for row in [RUN_TABLE_COLUMNS] + cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def _print_train_result(result, command: str = "train"):
    """Print the outcome; an interrupted run says how to resume it and exits 130, as Ctrl-C should."""
    m = result.metrics
    if m.get("worker"):  # a non-chief worker of a multi-machine run: the chief evaluates and writes the run
        click.echo(f"Worker done after {m['epochs_run']} epoch(s); worker 0 writes the run folder and its results")
        return
    scored = f"Validation {m['metric']} {m['val_score']:.4f}, " if m.get("metric", "accuracy") != "accuracy" else ""
    click.echo(f"{scored}{'accuracy' if scored else 'Validation accuracy'} {m['val_accuracy']:.4f} (loss "
               f"{m['val_loss']:.4f}) after {m['epochs_run']} epoch(s) in {m['train_seconds']:.0f} s")
    click.echo(f"Run folder: {result.run_dir}")
    if result.interrupted:
        from .resume import resume_hint

        click.echo(f"Interrupted. {resume_hint(result.run_dir, command)}", err=True)
        sys.exit(130)


def _answer_line(comp) -> str:
    """What `kit run` would write by default for this folder (kit.answers), or why it would ask first."""
    from .answers import decide_answer
    from .config import Config

    try:
        answer = decide_answer(comp.sample, comp.class_names, Config(), comp.sample_file, comp.tag_separator)
    except KitError as e:
        return str(e)
    return f"{answer.describe()}; metric {answer.default_metric()}"


@cli.command()
@click.argument("data", type=click.Path(file_okay=False))
@_with_params(_reading_params)
@click.option("--json", "json_file", type=click.Path(dir_okay=False), help="Also write a machine-readable report.")
@click.option("--strict", is_flag=True, help="Exit 1 when there are warnings (errors always exit 2).")
@click.option("--force", is_flag=True, help="Replace a --json report kit wrote before.")
def validate(data, json_file, strict, force, **reading):
    """Check a data folder before training: every bad row named.

    Exit status: 0 clean, 1 warnings only (with --strict), 2 errors.

    \b
    Example:
      kit validate sample_data --json report.json
    """
    from types import SimpleNamespace

    from .data import ReadOptions, load_competition
    from .outputs import check_output, record_written
    from .runs import write_json
    from .validation import validate as validate_folder

    json_path = check_output(json_file, "--json", force, [data]) if json_file else None
    comp = load_competition(data, ReadOptions.of(SimpleNamespace(**reading)))
    report = validate_folder(comp, progress=not _progress().quiet)
    click.echo(f"{data}: {comp.layout} layout; train {comp.train_file}"
               + (f", test {comp.test_file}" if comp.test_file else "")
               + (f", sample {comp.sample_file}" if comp.sample_file else ""))
    click.echo(report.summary())
    if comp.test is not None:
        click.echo(f"Submission: {_answer_line(comp)}")
    for problem in report.problems:
        click.echo(f"{problem.severity}: {problem}")
    click.echo(f"{len(report.errors)} error(s), {len(report.warnings)} warning(s)")
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        write_json(json_path, report.to_dict())
        record_written(json_path)
    sys.exit(2 if report.errors else 1 if strict and report.warnings else 0)


@cli.command(cls=SectionedCommand)
@_with_params(*TRAINING_PARAMS)
def train(data, config_file, force, **flags):
    """Train one model on DATA into runs/NAME/.

    \b
    Example:
      kit train sample_data --epochs 5 --name first
    """
    from .training import train as train_run

    started = time.time()  # --time-budget counts from here
    config, _ = _settings(data, config_file, flags)
    result = train_run(config, force=force, log=_progress(), resume=bool(flags["resume_run"]),
                       deadline=started + config.time_budget if config.time_budget else None)
    _print_train_result(result, "train")


@cli.command(cls=SectionedCommand)
@_with_params(*TRAINING_PARAMS, lambda: [_option("Submission", "--output", type=click.Path(dir_okay=False),
                                                 help="Submission path. Default RUN/submission.csv.")])
def run(data, config_file, force, output, **flags):
    """Validate, train, write submission.csv and the report, in one go.

    \b
    Example:
      kit run sample_data
    """
    from .runs import REPORT_HTML
    from .submission import make_submission as write
    from .training import train as train_run

    started = time.time()  # --time-budget counts from here
    config, answers = _settings(data, config_file, flags)
    if output:  # refused before training, not after
        from .outputs import check_output

        check_output(output, "--output", force, [config.data])
    result = train_run(config, force=force, log=_progress(), resume=bool(flags["resume_run"]), command="run",
                       deadline=started + config.time_budget if config.time_budget else None)
    _print_train_result(result, "run")
    if result.metrics.get("worker"):
        return
    sub = write(result.run_dir, config.data, output, force=force, competition=result.competition)
    click.echo(f"Submission: {sub.path} ({sub.rows} rows, {', '.join(sub.columns)})")
    if not answers:  # a labelled test table (Kaggle's Fashion-MNIST CSVs) is an answer key too
        from .sources import answer_key

        answers = answer_key(config.data)
    if answers:  # a built-in dataset, or a labelled test table: the held-out answers are known
        from .submission import score_submission

        metric = result.config.metric
        value = score_submission(sub.path, answers, metric, result.config.positive)
        click.echo(f"Held-out test {metric}: {value:.4f} (against {answers})")
    click.echo(f"Report: {result.run_dir / REPORT_HTML}")


@cli.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False, exists=True))
@click.option("--name", help="Name of the new run. Default: RUN's name + '-reproduced'.")
@click.option("--force", is_flag=True, help="Replace an existing run of that name.")
def reproduce(run_dir, name, force):
    """Train again with a run's resolved settings on its data, and compare.

    \b
    Example:
      kit reproduce runs/first
    """
    from .runs import RUN_INFO_FILE, read_config, read_json, read_metrics
    from .training import train as train_run

    config = read_config(run_dir)
    old = read_json(Path(run_dir) / RUN_INFO_FILE) if (Path(run_dir) / RUN_INFO_FILE).is_file() else {}
    old = old if isinstance(old, dict) else {}
    config.name = name or f"{Path(run_dir).name}-reproduced"
    config.runs_dir = str(Path(run_dir).parent)
    result = train_run(config.validate(), force=force, log=_progress())
    _print_train_result(result)
    new = read_json(result.run_dir / RUN_INFO_FILE)
    if old.get("data_fingerprint") and old["data_fingerprint"] != new["data_fingerprint"]:
        click.echo("Note: the data changed since the original run (different fingerprint).")
    before = read_metrics(run_dir).get("val_accuracy")
    original = f"{before:.4f}" if isinstance(before, (int, float)) else "not recorded"
    click.echo(f"Validation accuracy: original {original}, reproduced {result.metrics['val_accuracy']:.4f}")


@cli.command("make-submission")
@click.argument("run_dirs", metavar="RUN... [DATA]", nargs=-1, required=True, type=click.Path(file_okay=False,
                                                                                             exists=True))
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Default FIRST_RUN/submission.csv.")
@click.option("--weights", help="Ensemble weights, one per run, comma-separated (default equal).")
@click.option("--tta", type=click.IntRange(0, 64), default=0,
              help="Average N test-time views (original, mirror if trained with "
                                                 "flips, then small shifts).")
@click.option("--force", is_flag=True, help="Replace an existing submission file.")
@click.option("--trust-model", "trusted", multiple=True, metavar="SHA256",
              help="Also load a model file with this sha256 that the run's manifest does not vouch for.")
def make_submission(run_dirs, output, weights, tta, force, trusted):
    """Predict the test images with one run, all folds of a k-fold run, or an ensemble of runs.

    The last argument may be the DATA folder (default: the folder the first run was trained on).

    \b
    Example:
      kit make-submission runs/first sample_data -o submission.csv
      kit make-submission runs/a runs/b --weights 2,1 --tta 4
    """
    from .runs import CONFIG_FILE
    from .submission import ensemble_validation_accuracy
    from .submission import make_submission as write

    runs = [r for r in run_dirs if (Path(r) / CONFIG_FILE).is_file()]
    data = [r for r in run_dirs if r not in runs]
    if len(data) > 1 or (data and run_dirs[-1] != data[0]):
        raise click.UsageError(f"not run folders: {', '.join(data)} (only the last argument may be the DATA folder)")
    parsed = _parse_weights(weights) if weights else None
    if len(runs) > 1:
        score = ensemble_validation_accuracy(runs, parsed)
        click.echo(f"Ensemble validation accuracy: {score:.4f}" if score is not None else
                   "Ensemble validation accuracy: not available (the runs were validated on different images)")
    sub = write(runs, data[0] if data else None, output, force=force, weights=parsed, tta=tta, log=_progress(),
                trusted=trusted)
    click.echo(f"Wrote {sub.path}: {sub.rows} rows, columns {', '.join(sub.columns)} ({sub.kind})")


def _parse_weights(text: str) -> list[float]:
    """--weights 2,1: finite non-negative numbers (kit.submission checks there is one per run)."""
    import math

    try:
        values = [float(w) for w in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(v) and v >= 0 for v in values) or sum(values) <= 0:
        raise click.BadParameter(f"{text!r}: expected finite non-negative numbers separated by commas, e.g. 2,1",
                                 param_hint="--weights")
    return values


@cli.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False, exists=True))
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("--top", default=3, show_default=True, type=click.IntRange(min=1),
              help="How many classes to show per image.")
@click.option("--trust-model", "trusted", multiple=True, metavar="SHA256",
              help="Also load a model file with this sha256 that the run's manifest does not vouch for.")
def predict(run_dir, images, top, trusted):
    """Print the top classes of single images.

    \b
    Example:
      kit predict runs/first sample_data/test/1500.png
    """
    from .predict import predict_images
    from .runs import Run

    for path, ranked in predict_images(Run.open(run_dir, trusted), list(images), top=top):
        click.echo(f"{path}: " + ", ".join(f"{name} {p:.3f}" for name, p in ranked))


@cli.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False, exists=True))
def report(run_dir):
    """(Re)write a run's classification report, confusion matrix and curves.

    \b
    Example:
      kit report runs/first
    """
    from .reports import write_reports
    from .runs import REPORT_TEXT

    for path in write_reports(run_dir):
        click.echo(f"Wrote {path}")
    click.echo((Path(run_dir) / REPORT_TEXT).read_text(encoding="utf-8"))


@cli.command()
def models():
    """List the registered models.

    \b
    Example:
      kit models
    """
    from .models import MODELS
    from .transfer import BACKBONES, photo_size

    for name, spec in MODELS.items():
        click.echo(f"{name:20s} {spec.optimizer:6s} lr {spec.learning_rate:<7g} {spec.summary}")
    for name, backbone in BACKBONES.items():
        click.echo(f"{name:20s} adamw  lr 0.001   backbone keras.applications.{backbone.constructor}, "
                   f"{backbone.image_size} px ({photo_size(backbone.image_size)} for larger photos), "
                   "two-phase fine-tuning")


@cli.command()
def recipes():
    """List the tutorial recipes (`kit train --recipe NAME`) with their published figures.

    \b
    Example:
      kit recipes
      kit run --recipe mnist-dense
    """
    from .recipes import RECIPES

    for name, r in RECIPES.items():
        s = r.settings
        backbone = (", frozen backbone" if s.get("fine_tune_epochs") == 0 else "") + \
            (f", {s['head']} head" if "head" in s else "")
        click.echo(f"{name:20s} {r.dataset:14s} {s['model']:13s} {s['optimizer']} lr {s['learning_rate']:g}, batch "
                   f"{s['batch_size']}, {s['epochs']} epochs, augment {s['augment']}{backbone}; published: {r.published}")


@cli.group()
def datasets():
    """Built-in datasets: list them, export them as competition folders."""


@datasets.command("list")
def datasets_list():
    """Name, classes, sizes, and whether each dataset is in the Keras cache.

    \b
    Example:
      kit datasets list
    """
    from .datasets import dataset_status, keras_cache_dir

    click.echo(f"Keras cache: {keras_cache_dir()}")
    for name, info, cached in dataset_status():
        click.echo(f"{name:14s} {info.classes:4d} classes  {info.sizes:28s} {'cached' if cached else 'not cached'}")


@datasets.command("export")
@click.argument("name")
@click.argument("out_dir", metavar="DIR", type=click.Path(file_okay=False))
@click.option("--layout", type=click.Choice(["av", "digits", "folders"]), default="av", show_default=True,
              help="av: train.csv + train/<id>.png; digits: filename,label + Images/train/; folders: train/<class>/.")
@click.option("--limit", type=click.IntRange(min=0), default=0,
              help="Only the first N training images (N/5 test images).")
@click.option("--answers", type=click.Path(dir_okay=False), help="Answer key path. Default: answers.csv beside DIR.")
@click.option("--force", is_flag=True, help="Write into a non-empty DIR.")
def datasets_export(name, out_dir, layout, limit, answers, force):
    """Write a built-in dataset as a competition folder, with the answer key kept beside it.

    \b
    Example:
      kit datasets export fashion_mnist comp/fashion --layout av
      kit run comp/fashion && kit score runs/*/submission.csv comp/answers.csv
    """
    from .datasets import export_arrays, load_arrays

    written = export_arrays(load_arrays(name), out_dir, layout=layout, limit=limit, answers=answers, force=force)
    click.echo(f"Wrote {out_dir} ({layout} layout); answers in {written}")


@cli.command()
@click.argument("run_dirs", metavar="RUN...", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True))
@click.option("--format", "fmt", type=click.Choice(["savedmodel", "tflite", "onnx"]), default="savedmodel",
              show_default=True)
@click.option("--output", "-o", type=click.Path(), help="Default RUN/export/<savedmodel|model.tflite|model.onnx>.")
@click.option("--weights", help="Several runs: ensemble weights, one per run, comma-separated (default equal).")
@click.option("--force", is_flag=True, help="Replace an existing export.")
@click.option("--trust-model", "trusted", multiple=True, metavar="SHA256",
              help="Also load a model file with this sha256 that the run's manifest does not vouch for.")
def export(run_dirs, fmt, output, weights, force, trusted):
    """Export a run's model — one model averaging the folds of a k-fold run, or several runs — and check it
    predicts what kit predicts on the validation images.

    \b
    Example:
      kit export runs/first --format tflite
      kit export runs/kfold runs/other --weights 2,1
    """
    from .export import export_run

    result = export_run(run_dirs, fmt, output, force=force, trusted=trusted,
                        weights=_parse_weights(weights) if weights else None)
    click.echo(f"Wrote {result.path} ({result.format}); on {result.checked} validation images it agrees with kit on "
               f"{result.agreement:.2%} (largest probability difference {result.max_abs_diff:.2g})")


@cli.command()
@click.argument("out_dir", metavar="DIR", type=click.Path(file_okay=False))
@click.option("--template", "-t", default="baseline", show_default=True, help="baseline, transfer or kfold.")
@click.option("--force", is_flag=True, help="Write into an existing non-empty folder.")
def new(out_dir, template, force):
    """Start a competition project from a template (settings, README, smoke test, tiny data).

    \b
    Example:
      kit new comp --template baseline && cd comp && kit run --config kit.toml
    """
    from .project import render_template

    files, kept = render_template(template, out_dir, force=force)
    click.echo(f"Created {out_dir} from template {template}: {', '.join(str(f.relative_to(out_dir)) for f in files)}"
               + ("" if Path(out_dir, "data") in kept else ", data/ (tiny digits competition)"))
    if kept:
        click.echo(f"Kept your own file(s), not replaced: {', '.join(str(f.relative_to(out_dir)) for f in kept)}")
    click.echo(f"Next: cd {out_dir} && kit run --config kit.toml")


@cli.command()
@click.argument("submission", type=click.Path(dir_okay=False, exists=True))
@click.argument("answers", type=click.Path(dir_okay=False, exists=True))
@click.option("--metric", default="accuracy", show_default=True, callback=_parsed_by(check_metric),
              help="accuracy, f1_macro, log_loss, auc, map@K (top-k guesses) or f1/f2 (mean F-beta over rows of "
                   "tags).")
@click.option("--positive", default="", help="auc/log loss of one probability per row: the answer value it is the "
                                             "probability of (default 1, true or yes).")
def score(submission, answers, metric, positive):
    """Score a submission against an answer key, with a leaderboard's checks.

    \b
    Example:
      kit score runs/first/submission.csv answers.csv --metric f1_macro
    """
    from .submission import score_submission

    click.echo(f"{metric}: {score_submission(submission, answers, metric, positive):.5f}")


def main() -> None:
    """The `kit` command (and `python -m kit`): cli, then a quick exit.

    Once TensorFlow is loaded, letting the interpreter tear itself down costs seconds of CPU at every exit (4.5 s
    after a bare `import tensorflow`, 4-5 s after `kit run`, 2 cores) and frees nothing the operating system
    does not. So kit joins its worker processes, runs the exit handlers (temporary caches removed, logs
    flushed), flushes its output and ends the process there."""
    try:
        cli(prog_name="kit")
        code = 0
    except SystemExit as e:
        code = e.code
    if isinstance(code, str) or code is None:  # sys.exit("message") prints it, as the interpreter would
        if code:
            print(code, file=sys.stderr)
        code = 1 if code else 0
    if "tensorflow" not in sys.modules:
        sys.exit(code)
    import atexit
    import os

    from .images import stop_process_pool

    stop_process_pool()  # joined now: multiprocessing's exit handler would otherwise wait for them
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


if __name__ == "__main__":  # `python -m kit.cli`, used by tests that need a real process
    main()
