"""The `kit` command: parses options, calls one library function, prints its result. Nothing imports this."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from . import __version__
from .config import parse_duration
from .errors import KitError, doing, image_error_in, one_line, os_error_line
from .metrics import check_metric


# `kit --help` lists the commands in the order a competition uses them; any other command comes after them.
WORKFLOW_ORDER = ("new", "validate", "doctor", "run", "train", "make-submission", "predict", "report", "score", "runs",
                  "reproduce", "export", "models", "recipes", "datasets")


class KitGroup(click.Group):
    """Turns KitError into `Error: …` and a non-zero exit, without a traceback unless --debug."""

    def list_commands(self, ctx):
        if self.name != "cli":  # a subgroup (kit datasets): alphabetical
            return super().list_commands(ctx)
        known = [c for c in WORKFLOW_ORDER if c in self.commands]
        return known + sorted(c for c in self.commands if c not in known)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KitError as e:
            if ctx.params.get("debug"):
                raise
            click.echo(f"Error: {shortened(one_line(str(e)))}", err=True)
            ctx.exit(e.exit_code)
        except OSError as e:  # the operating system said no: disk full, read-only, permission denied, …
            if ctx.params.get("debug"):
                raise
            click.echo(f"Error: {shortened(os_error_line(e))}", err=True)
            ctx.exit(2)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # Click's own: --help, usage errors, exits
        except Exception as e:  # the last resort: whatever a library raised, one line and --debug for the rest
            if ctx.params.get("debug"):
                raise
            error = image_error_in(e)  # an image that broke inside tf.data, where a KitError arrives wrapped
            click.echo(f"Error: {shortened(str(error) if error else _unforeseen_line(e))}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:  # the second Ctrl-C of a training run, or any Ctrl-C elsewhere
            click.echo("\nAborted (files kit writes are replaced atomically, so none is left half-written).", err=True)
            ctx.exit(130)


def _unforeseen_line(error: Exception) -> str:
    """An error kit did not foresee, from any library: what kit was doing, the library and the error's first line,
    never a traceback (--debug shows it)."""
    first = (str(error).strip() or type(error).__name__).splitlines()[0][:300]
    library = type(error).__module__.split(".")[0]
    origin = "TensorFlow" if library == "tensorflow" else f"{library}.{type(error).__name__}" \
        if library not in ("builtins", "kit") else type(error).__name__
    return f"{doing(error)}: {origin}: {one_line(first)} (run with --debug for the full report)"


def shortened(line: str, limit: int = 1000) -> str:
    """An error line kept readable: a message that would run to kilobytes (a path repeated, a long listing) is cut."""
    return line if len(line) <= limit else line[: limit - 1] + "…"


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
        _option("Training", "--group-col", help="Rows sharing this training-table column (a driver, a patient) "
                                                "stay on one side of the validation split, and in one fold."),
        _option("Training", "--augment", type=_choice("augment"),
                help="Default auto: light for backbones and for runs of 30 or more epochs, else none."),
        _option("Training", "--time-budget", metavar="DURATION", callback=_parsed_by(parse_duration),
                help="Finish the whole command within this time (30s, 5m, 1h): the epochs (up to --epochs, if "
                     "given) and the learning-rate schedule are planned from the first epoch's pace."),
        _option("Training", "--early-stopping", type=int,
                help="Stop after N epochs without improvement. Default off."),
        _option("Training", "--metric", callback=_parsed_by(check_metric),
                help="The competition's metric: accuracy, f1_macro, log_loss, auc (P(positive), or the mean "
                     "one-vs-rest AUC over classes), qwk (integer grades), map@K, f1 or f2 (tags); picks "
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
        _option("Transfer learning", "--fine-tune-epochs", type=click.IntRange(0, 100_000),  # -1 (auto): kit's
                help="Backbones: epochs with the top layers unfrozen. Default: 3 with 2,000 or more training images per "
                     "class, else 0 (the head on the frozen backbone is the model)."),
        _option("Transfer learning", "--fine-tune-layers", type=int,
                help="Backbones: how many top layers to unfreeze. Default 30."),
        _option("Transfer learning", "--feature-views", type=int,
                help="Backbones: views per image in the cached phase (the image, its mirror when the augmentation flips, then augmented ones). Default: 2 with --augment strong (photos), else 1."),
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


def _listing_options(f):
    """--csv and --json, for every listing command (kit.listing)."""
    f = click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")(f)
    return click.option("--csv", "as_csv", is_flag=True, help="Print CSV instead of a table.")(f)


def _print_listing(rows: list[dict], columns: list[str], as_csv: bool, as_json: bool, empty: str = "") -> None:
    from .listing import format_rows, output_format

    fmt = output_format(as_csv, as_json)
    if not rows and fmt == "table" and empty:
        click.echo(empty)
        return
    click.echo(format_rows(rows, columns, fmt))


@cli.command("runs")
@click.argument("runs_dir", metavar="[DIR]", default="runs", type=click.Path(file_okay=False))
@_listing_options
def runs_table(runs_dir, as_csv, as_json):
    """A leaderboard of your runs: by metric, the best validation score first.

    \b
    Example:
      kit runs
      kit runs runs --csv > runs.csv
    """
    from .runs import RUN_TABLE_COLUMNS, list_runs

    _print_listing(list_runs(runs_dir), RUN_TABLE_COLUMNS, as_csv, as_json, empty=f"No runs in {runs_dir}/")


def _print_train_result(result, command: str = "train"):
    """Print the outcome; an interrupted run says how to resume it and exits 130, as Ctrl-C should."""
    m = result.metrics
    if m.get("worker"):  # a non-chief worker of a multi-machine run: the chief evaluates and writes the run
        click.echo(f"Worker done after {m['epochs_run']} epoch(s); worker 0 writes the run folder and its results")
        return
    scored = f"Validation {m['metric']} {m['val_score']:.4f}, " if m.get("metric", "accuracy") != "accuracy" else ""
    click.echo(f"{scored}{'accuracy' if scored else 'Validation accuracy'} {m['val_accuracy']:.4f} (loss "
               f"{m['val_loss']:.4f}) after {m['epochs_run']} epoch(s) in {m['train_seconds']:.0f} s")
    warning = _learned_nothing(m, result.config)
    if warning:
        click.echo(f"Warning: {warning}", err=True)
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
@click.option("--explain", is_flag=True, help="Also show why kit reads the folder so: its evidence and runner-up.")
def validate(data, json_file, strict, force, explain, **reading):
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
    click.echo(f"{data}: {comp.layout} layout; train {comp.shown(comp.train_file)}"
               + (f", test {comp.shown(comp.test_file)}" if comp.test_file else "")
               + (f", sample {comp.shown(comp.sample_file)}" if comp.sample_file else ""))
    for line in comp.reading():
        click.echo(f"Reading: {line}")
    for line in comp.evidence if explain else []:
        click.echo(f"Evidence: {line}")
    click.echo(report.summary())
    if comp.test is not None:
        click.echo(f"Submission: {_answer_line(comp)}")
    for problem in report.problems:
        click.echo(f"{problem.severity}: {problem}")
    click.echo(f"{len(report.errors)} error(s), {len(report.warnings)} warning(s)")
    from .doctor import summary_line

    doctor_line = summary_line(data, report.fingerprint)
    if doctor_line:
        click.echo(doctor_line)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        write_json(json_path, report.to_dict())
        record_written(json_path)
    sys.exit(2 if report.errors else 1 if strict and report.warnings else 0)


@cli.command()
@click.argument("data", type=click.Path(file_okay=False))
@_with_params(_reading_params)
@click.option("--run", "run_dir", type=click.Path(file_okay=False, exists=True),
              help="Take label issues from this run's out-of-fold predictions (a --folds run), not a quick model.")
@click.option("--time-budget", metavar="DURATION", callback=_parsed_by(parse_duration),
              help="Keep the quick label model within this time (30s, 5m).")
@click.option("--json", "json_file", type=click.Path(dir_okay=False), help="Also write the findings as JSON.")
@click.option("--output", type=click.Path(dir_okay=False),
              help="The HTML report. Default: RUN/doctor.html with --run, else ./doctor.html.")
@click.option("--force", is_flag=True, help="Replace a doctor.html or --json file kit wrote before.")
def doctor(data, run_dir, time_budget, json_file, output, force, **reading):
    """Find what spoils validation and the leaderboard: train/test near-duplicates (leaks), near-duplicates with
    conflicting labels, likely label errors, and test images unlike the training ones (shift).

    \b
    Example:
      kit doctor sample_data
      kit doctor data --run runs/kfold --json doctor.json
    """
    from .doctor_page import run_doctor

    started = time.time()
    html = output or str(Path(run_dir) / "doctor.html" if run_dir else "doctor.html")
    found, paths = run_doctor(data, reading, run_dir, time_budget, html, json_file, force, _progress(), started)
    click.echo(f"Doctor: {found.summary()}")
    for pair in found.train_test_duplicates[:5]:
        click.echo(f"  leak: test {pair['test']} ~ train {pair['train']} ({pair['train_label']}), distance "
                   f"{pair['distance']:.4f}")
    for group in [g for g in found.train_duplicates if g["conflicting"]][:5]:
        members = ", ".join(f"{i} ({lab})" for i, lab in zip(group["ids"], group["labels"]))
        click.echo(f"  conflicting labels: {members}")
    for issue in found.label_issues[:5]:
        click.echo(f"  label issue: {issue['id']} labelled {issue['label']}, looks like {issue['suggested']} "
                   f"(score {issue['score']:.3f})")
    click.echo(f"Report: {', '.join(str(p) for p in paths)}")


@cli.command(cls=SectionedCommand)
@_with_params(*TRAINING_PARAMS)
def train(data, config_file, force, **flags):
    """Train one model on DATA into runs/NAME/.

    \b
    Example:
      kit train sample_data --epochs 5 --name first
    """
    from .workflow import train_and_submit

    started = time.time()  # --time-budget counts from here
    config, answers = _settings(data, config_file, flags)
    train_and_submit(config, answers, command="train", force=force, log=_progress(),
                     resume=bool(flags["resume_run"]), started=started,
                     on_trained=lambda result: _print_train_result(result, "train"))


@cli.command(cls=SectionedCommand)
@_with_params(*TRAINING_PARAMS, lambda: [_option("Submission", "--output", type=click.Path(dir_okay=False),
                                                 help="Submission path. Default RUN/submission.csv."),
                                         _option("Data", "--doctor", is_flag=True,
                                                 help="Run `kit doctor` first (RUNS_DIR/doctor.html).")])
def run(data, config_file, force, output, doctor, **flags):
    """Validate, train, write submission.csv and the report, in one go.

    \b
    Example:
      kit run sample_data
      kit run data --doctor
    """
    from .runs import REPORT_HTML
    from .workflow import train_and_submit

    started = time.time()  # --time-budget counts from here
    config, answers = _settings(data, config_file, flags)
    if doctor:
        _doctor_first(config, flags)
    outcome = train_and_submit(config, answers, command="run", output=output, force=force, log=_progress(),
                               resume=bool(flags["resume_run"]), started=started,
                               on_trained=lambda result: _print_train_result(result, "run"))
    result, sub = outcome.result, outcome.submission
    if sub is None:
        return
    click.echo(f"Submission: {sub.path} ({sub.rows} rows, {', '.join(sub.columns)})")
    if outcome.held_out is not None:
        click.echo(f"Held-out test {result.config.metric}: {outcome.held_out:.4f} (against {outcome.answers})")
    click.echo(f"Report: {result.run_dir / REPORT_HTML}")


def _doctor_first(config, flags: dict) -> None:
    """`kit run --doctor`: the doctor's report on the data, in the runs folder, before training (its summary line
    then appears in the run's report)."""
    from .doctor_page import run_doctor

    html = Path(config.runs_dir or "runs") / "doctor.html"
    found, _ = run_doctor(config.data, config, None, None, html, None, True, _progress())
    click.echo(f"Doctor: {found.summary()} (see {html})")


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
    if not values or not all(math.isfinite(v) and v >= 0 for v in values) or max(values) <= 0:
        raise click.BadParameter(f"{text!r}: expected finite non-negative numbers separated by commas, e.g. 2,1",
                                 param_hint="--weights")
    return values


@cli.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False, exists=True))
@click.argument("images", metavar="FOLDER|IMAGES...", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--output", "-o", type=click.Path(dir_okay=False, allow_dash=True),
              help="Write a CSV (id, label, probability, then the next classes) to FILE, or to stdout with -.")
@click.option("--top", default=3, show_default=True, type=click.IntRange(min=1),
              help="How many classes to show per image.")
@click.option("--force", is_flag=True, help="Replace an --output file kit wrote before.")
@click.option("--trust-model", "trusted", multiple=True, metavar="SHA256",
              help="Also load a model file with this sha256 that the run's manifest does not vouch for.")
def predict(run_dir, images, output, top, force, trusted):
    """The top classes of images: files, or every image in a folder (read recursively).

    \b
    Example:
      kit predict runs/first sample_data/test/1500.png
      kit predict runs/first sample_data/test -o predictions.csv
    """
    from .predict import images_to_predict, prediction_table
    from .runs import Run

    if output and output != "-":
        from .outputs import check_output

        output = check_output(output, "--output", force, [Path(i) for i in images if Path(i).is_dir()])
    run = Run.open(run_dir, trusted)
    table = prediction_table(run, images_to_predict(images), top=top)
    if not output:
        for _, row in table.iterrows():
            ranked = [(row["label"], row["probability"])] + [(row[f"label_{k}"], row[f"probability_{k}"])
                                                            for k in range(2, top + 1) if f"label_{k}" in row]
            click.echo(f"{row['id']}: " + ", ".join(f"{name} {p:.3f}" for name, p in ranked))
    elif output == "-":
        click.echo(table.to_csv(index=False, float_format="%.6f", lineterminator="\n"), nl=False)
    else:
        _write_predictions(table, output)
        click.echo(f"Wrote {output}: {len(table)} images, columns {', '.join(table.columns)}")


def _write_predictions(table, path: Path) -> None:
    from .outputs import record_written
    from .runs import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, newline="", encoding="utf-8") as f:
        table.to_csv(f, index=False, float_format="%.6f", lineterminator="\n")
    record_written(path)


@cli.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False, exists=True))
@click.option("--output", "-o", "out_dir", type=click.Path(file_okay=False),
              help="Write the report files (report.html, confusion matrix, curves) into this folder.")
@click.option("--rewrite", is_flag=True, help="Write the report files again inside RUN (after a kit upgrade).")
@click.option("--force", is_flag=True, help="Replace report files kit wrote before in --output.")
def report(run_dir, out_dir, rewrite, force):
    """Print a run's classification report; write its report files only where asked (RUN is only read).

    \b
    Example:
      kit report runs/first
      kit report /kaggle/input/my-run -o report/
    """
    from .reports import report_text, write_reports
    from .runs import REPORT_HTML

    if out_dir and rewrite:
        raise click.UsageError("--output and --rewrite: choose one")
    written = []
    if out_dir:
        from .outputs import check_output, record_written
        from .runs import read_config

        out = check_output(out_dir, "--output", force, [read_config(run_dir).data], folder=True)
        written = write_reports(run_dir, out)
        for path in [*written, out]:
            record_written(path)
    elif rewrite:
        written = write_reports(run_dir)
    for path in written:
        click.echo(f"Wrote {path}")
    click.echo(report_text(run_dir))
    if not written and (Path(run_dir) / REPORT_HTML).is_file():
        click.echo(f"Report: {Path(run_dir) / REPORT_HTML}")


@cli.command()
@_listing_options
def models(as_csv, as_json):
    """List the registered models.

    \b
    Example:
      kit models
    """
    from .listing import MODEL_COLUMNS, model_rows

    _print_listing(model_rows(), MODEL_COLUMNS, as_csv, as_json)


@cli.command()
@_listing_options
def recipes(as_csv, as_json):
    """List the tutorial recipes (`kit train --recipe NAME`) with their published figures.

    \b
    Example:
      kit recipes
      kit run --recipe mnist-dense
    """
    from .listing import RECIPE_COLUMNS, recipe_rows

    _print_listing(recipe_rows(), RECIPE_COLUMNS, as_csv, as_json)


@cli.group()
def datasets():
    """Built-in datasets: list them, export them as competition folders."""


@datasets.command("list")
@_listing_options
def datasets_list(as_csv, as_json):
    """Name, classes, sizes, and whether each dataset is in the Keras cache.

    \b
    Example:
      kit datasets list
    """
    from .datasets import keras_cache_dir
    from .listing import DATASET_COLUMNS, dataset_rows

    _progress()(f"Keras cache: {keras_cache_dir()}")
    _print_listing(dataset_rows(), DATASET_COLUMNS, as_csv, as_json)


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
@click.option("--template", "-t", default="baseline", show_default=True,
              help="baseline, transfer, kfold or notebook (a Jupyter notebook using kit's Python API).")
@click.option("--force", is_flag=True, help="Write into an existing non-empty folder.")
def new(out_dir, template, force):
    """Start a competition project from a template (settings, README, smoke test, tiny data).

    \b
    Example:
      kit new comp --template baseline && cd comp && kit run --config kit.toml
      kit new comp --template notebook
    """
    from .project import render_template

    files, kept = render_template(template, out_dir, force=force)
    click.echo(f"Created {out_dir} from template {template}: {', '.join(str(f.relative_to(out_dir)) for f in files)}"
               + ("" if Path(out_dir, "data") in kept else ", data/ (tiny digits competition)"))
    if kept:
        click.echo(f"Kept your own file(s), not replaced: {', '.join(str(f.relative_to(out_dir)) for f in kept)}")
    click.echo(f"Next: open {Path(out_dir) / 'notebook.ipynb'} and run every cell" if template == "notebook" else
               f"Next: cd {out_dir} && kit run --config kit.toml")


@cli.command()
@click.argument("submission", type=click.Path(dir_okay=False, exists=True))
@click.argument("answers", type=click.Path(dir_okay=False, exists=True))
@click.option("--metric", default="accuracy", show_default=True, callback=_parsed_by(check_metric),
              help="accuracy, f1_macro, log_loss, auc (one probability per row, or mean column-wise AUC of one "
                   "per class), qwk (quadratic weighted kappa of integer grades), map@K (top-k guesses) or f1/f2 "
                   "(mean F-beta over rows of tags). The answer key is id,answer or one-hot (one 0/1 column per "
                   "class).")
@click.option("--positive", default="", help="auc/log loss of one probability per row: the answer value it is the "
                                             "probability of (default 1, true or yes).")
def score(submission, answers, metric, positive):
    """Score a submission against an answer key, with a leaderboard's checks.

    \b
    Example:
      kit score runs/first/submission.csv answers.csv --metric f1_macro
    """
    from .data import read_table
    from .submission import score_submission

    click.echo(f"{metric}: {score_submission(submission, answers, metric, positive):.5f}")
    if click.get_current_context().get_parameter_source("metric").name == "DEFAULT" and \
            len(read_table(Path(submission)).columns) > 2:  # one probability per class, scored by its top class
        click.echo("Note: the accuracy of each row's most probable class; leaderboards score probabilities with "
                   "--metric log_loss or auc", err=True)


def _learned_nothing(m: dict, config) -> str:
    """Why the validation numbers show nothing learned ('' when they show something): AUC at chance, or for
    metrics of the answer itself, accuracy no better than always answering the most common class."""
    from .transfer import is_transfer

    if m.get("num_validation", 0) < 10:
        return ""
    helps = "more data or epochs may help" if is_transfer(config.model) else \
        "more data, epochs or a pretrained backbone (docs/photos.md) may help"
    if m.get("metric") == "auc":  # a ranking: accuracy at 0.5 says nothing of it (a 2% positive class)
        return f"validation AUC {m['val_score']:.4f} is at chance: the model ranks nothing; {helps}" \
            if m["val_score"] <= 0.55 else ""
    majority = m.get("majority_rate")
    if majority is None or m["val_accuracy"] > majority + 1e-9:
        return ""
    return (f"validation accuracy {m['val_accuracy']:.4f} is no better than always answering the most common class "
            f"({majority:.4f}): the model has learned nothing it can show; {helps}")


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
