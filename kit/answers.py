"""What a submission holds, decided from the sample submission (and the training labels) before training: one
label per row, one probability per class, one probability P(positive) for a binary target, the k most probable
classes (top-k, scored by MAP@k), or multi-label tags.

- Tags: the training labels are tags separated by spaces, | or ; that recur across rows (Planet's "haze primary
  road"); kit.data finds them when it reads the table, so the classes are the tags.
- Top-k: the sample's single value column holds k space-separated guesses in every row (Humpback's five ids).
- Probability: a two-class target whose sample holds numbers within 0..1 (Aerial Cactus' 0.5, Histopathologic's
  0); the positive class is the one the sample names (a header equal to a class), the one that means yes (1,
  true, yes), or --positive CLASS.
- Probabilities: the sample has one column per class after the id.
--submission overrides the decision; --label-map asks for labels. The metric defaults to the one competitions
score that answer with (kit.metrics).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .config import Config, parse_label_map
from .data import split_tags
from .errors import ConfigError, DataError, few
from .metrics import TAG_METRICS, grades_of, map_k

YES = ("1", "true", "yes", "y", "positive", "pos")
DEFAULT_TOP_K = 5


@dataclass(frozen=True)
class Answer:
    kind: str  # "label", "probabilities", "probability", "top-k" or "tags"
    positive: str = ""  # "probability": the class whose probability is written
    k: int = 0  # "top-k": guesses per row
    separator: str = ""  # "tags": what separates tags, in the training labels and the submission
    unknown: str = ""  # "top-k": the class that stands for "none of these" (Humpback's new_whale), or ""
    ambiguous: bool = False  # "probability" read from a sample of 0s and 1s, which could be labels too

    def describe(self) -> str:
        return {"label": "one label per row", "probabilities": "one probability per class",
                "probability": f"one probability per row, P({self.positive})" + (
                    " (the sample's 0/1 values could also be labels: pass --submission label to write labels)"
                    if self.ambiguous else ""),
                "top-k": f"the {self.k} most probable classes per row"
                         + (f", {self.unknown} placed by a threshold tuned on validation" if self.unknown else ""),
                "tags": "the tags above per-tag thresholds tuned on validation"}[self.kind]

    def default_metric(self) -> str:
        return {"probability": "auc", "probabilities": "log_loss", "top-k": f"map@{self.k}",
                "tags": "f1"}.get(self.kind, "accuracy")


def decide_answer(sample: pd.DataFrame | None, class_names: list[str], config: Config, sample_name: str = "",
                  separator: str = "") -> Answer:
    """The answer kind for this competition (see the module's docstring); refused with one line when the sample,
    the classes and the metric do not fit it. `separator`: the training labels' tag separator ('' = not tags)."""
    kind = config.submission if config.submission != "auto" else \
        "tags" if separator else _kind_from_sample(sample, class_names, config)
    if kind == "tags" and not separator:
        raise ConfigError("--submission tags: the training labels hold one class each, not tags separated by "
                          "spaces, | or ;")
    if kind != "tags" and separator:
        raise ConfigError(f"--submission {kind}: the training labels are tags; use --submission tags")
    if kind == "probability":
        if len(class_names) != 2:
            raise ConfigError(f"--submission probability: needs two classes, the data has {len(class_names)}")
        chosen = config.submission == "probability"
        answer = Answer(kind, _positive(sample, class_names, config, sample_name),
                        ambiguous=not chosen and sample is not None and not _fractions(sample))
    elif kind == "top-k":
        spaced = [c for c in class_names if len(c.split()) != 1]
        if spaced:
            raise ConfigError(f"--submission top-k: class names hold spaces ('{spaced[0]}'), so space-separated "
                              "guesses could not be told apart")
        answer = Answer(kind, k=_guesses_per_row(sample) or map_k(config.metric) or DEFAULT_TOP_K,
                        unknown=_unknown(config, class_names))
    else:
        if kind == "probabilities" and sample is not None and set(sample.columns[1:]) != set(class_names):
            raise ConfigError("--submission probabilities: the sample needs one column per class after the id")
        answer = Answer(kind, separator=separator)
    check_metric_fits(answer, config.metric if config.metric != "auto" else answer.default_metric(), class_names)
    if config.unknown_class and kind != "top-k":
        raise ConfigError(f"--unknown-class {config.unknown_class}: only for top-k answers (several guesses per row)")
    return answer


def check_metric_fits(answer: Answer, metric: str, class_names: list[str] | None = None) -> None:
    if metric in TAG_METRICS and answer.kind != "tags":
        raise ConfigError(f"--metric {metric}: scores tags (multi-label); this competition's answer is "
                          f"{answer.describe()}; use f1_macro for one label per row")
    if answer.kind == "tags" and metric not in (*TAG_METRICS, "log_loss"):
        raise ConfigError(f"--metric {metric}: the answers are tags; use f1, f2 or log_loss")
    if metric == "auc" and answer.kind not in ("probability", "probabilities"):
        raise ConfigError(f"--metric auc: scores probabilities (P(positive), or one per class: the mean "
                          f"one-vs-rest AUC); this competition's answer is {answer.describe()}; pass "
                          "--submission probabilities if the leaderboard wants one probability per class")
    if metric == "qwk" and answer.kind != "label":
        raise ConfigError(f"--metric qwk: scores one integer grade per row; this competition's answer is "
                          f"{answer.describe()}; pass --submission label if the leaderboard wants grades")
    if metric == "qwk" and class_names is not None and grades_of(class_names) is None:
        odd = next(c for c in class_names if grades_of([c]) is None)
        raise ConfigError(f"--metric qwk: scores ordered integer grades (APTOS' 0-4); class '{odd}' is not an "
                          "integer; use accuracy or f1_macro")
    if map_k(metric) and answer.kind == "top-k" and map_k(metric) > answer.k:
        raise ConfigError(f"--metric {metric}: the submission holds {answer.k} guesses per row")


def _kind_from_sample(sample: pd.DataFrame | None, class_names: list[str], config: Config) -> str:
    if sample is None or (config.label_map and not _fractions(sample)):  # 0/1 values: labels, as the map says
        return "label"
    if len(sample.columns) > 2:
        return "probabilities"
    guesses = _guesses_per_row(sample)
    if len(sample.columns) == 2 and guesses and len(class_names) > guesses:
        spaced = [c for c in class_names if len(c.split()) != 1]
        if not spaced:
            return "top-k"
        if not _guesses(sample, class_names):  # labels (Plant Seedlings' "Sugar beet") or tags (Planet's)
            return "label"
        raise ConfigError(f"the sample submission holds {guesses} space-separated guesses per row, but class "
                              f"names hold spaces ('{spaced[0]}'), so guesses could not be told apart; rename the "
                              "classes, or pass --submission label if the sample's values are labels")
    if len(class_names) == 2 and len(sample.columns) == 2 and are_probabilities(sample.iloc[:, 1]):
        return "probability"
    return "label"


def _guesses(sample: pd.DataFrame, class_names: list[str]) -> bool:
    """Whether the sample's rows of several words are guesses (top-k) rather than class names with spaces or tags:
    a row that repeats a word, or a word no class name holds, makes them guesses."""
    words = {w for c in class_names for w in c.split()}
    rows = [v.split() for v in sample.iloc[:, 1].astype(str) if v.strip()]
    return any(len(set(r)) != len(r) or not set(r) <= words for r in rows)


def _fractions(sample: pd.DataFrame) -> bool:
    """Whether the sample's one value column holds a number strictly between 0 and 1 (0.5: plainly a probability,
    where 0 or 1 could be a label)."""
    if len(sample.columns) != 2:
        return len(sample.columns) > 2
    numbers = pd.to_numeric(sample.iloc[:, 1], errors="coerce")
    return bool(((numbers > 0) & (numbers < 1)).any())


def checked_label_map(config: Config, class_names: list[str], answer: Answer) -> dict[str, str]:
    """--label-map, checked against the data before any work: its keys exactly the classes, its values distinct and
    non-empty, and only where the submission holds labels."""
    mapping = parse_label_map(config.label_map)
    if not mapping:
        return {}
    if answer.kind != "label":
        raise ConfigError(f"--label-map {config.label_map}: the submission holds {answer.describe()}, not labels; "
                          "drop --label-map (or pass --submission label if the leaderboard wants labels)")
    unknown, missing = sorted(set(mapping) - set(class_names)), sorted(set(class_names) - set(mapping))
    if unknown or missing:
        raise ConfigError(f"--label-map {config.label_map}: needs exactly the training classes ({few(class_names)}): "
                          f"{len(unknown)} not a class ({few(unknown)}), {len(missing)} class(es) without a value "
                          f"({few(missing)})")
    return mapping


def _guesses_per_row(sample: pd.DataFrame | None) -> int:
    """k when every filled row of the sample's one value column holds k ≥ 2 space-separated guesses, else 0."""
    if sample is None or len(sample.columns) != 2:
        return 0
    values = sample.iloc[:, 1].astype(str).str.strip()
    counts = values[values != ""].str.split().str.len()
    return int(counts.iloc[0]) if len(counts) and counts.iloc[0] >= 2 and (counts == counts.iloc[0]).all() else 0


def _unknown(config: Config, class_names: list[str]) -> str:
    if config.unknown_class and config.unknown_class not in class_names:
        raise ConfigError(f"--unknown-class {config.unknown_class}: not a class of the training labels")
    return config.unknown_class


def are_probabilities(values: pd.Series) -> bool:
    """Whether every value is a number within 0..1 (blank cells aside)."""
    numbers = pd.to_numeric(values[values.str.strip() != ""], errors="coerce")
    return len(numbers) > 0 and bool(numbers.notna().all() and numbers.between(0, 1).all())


def _positive(sample: pd.DataFrame | None, class_names: list[str], config: Config, sample_name: str) -> str:
    if config.positive:
        if config.positive not in class_names:
            raise ConfigError(f"--positive {config.positive}: not a class (classes: {', '.join(class_names)})")
        return config.positive
    header = str(sample.columns[1]) if sample is not None and len(sample.columns) > 1 else ""
    named = [c for c in class_names if c == header]
    yes = [c for c in class_names if c.strip().lower() in YES]
    if len(named) == 1:
        return named[0]
    if len(yes) == 1:
        return yes[0]
    raise DataError(f"{sample_name or 'the sample submission'}: one probability per row, but of which class "
                    f"({' or '.join(class_names)})? pass --positive CLASS (or --submission label for labels)")


def encode_labels(labels, class_names: list[str], separator: str = "") -> np.ndarray:
    """Training targets: class indices (int32; -1 for a label that is not a class), or for tags a 0/1 float32
    matrix with one column per tag."""
    index = {c: i for i, c in enumerate(class_names)}
    if not separator:
        return np.asarray([index.get(label, -1) for label in labels], dtype=np.int32)
    matrix = np.zeros((len(labels), len(class_names)), np.float32)
    for row, label in enumerate(labels):
        for tag in split_tags(label, separator):
            if tag in index:
                matrix[row, index[tag]] = 1.0
    return matrix


def tag_separator_of(config: Config) -> str:
    """The run's tag separator ('' unless its answers are tags)."""
    return (config.tag_separator or " ") if config.submission == "tags" else ""


def metric_context(config: Config, class_names: list[str]) -> dict:
    """What a metric needs of the classes: the positive class' index (auc), the unknown class' (map@K), and the
    classes as integer grades (qwk; None unless every class name is an integer)."""
    index = {c: i for i, c in enumerate(class_names)}
    return {"positive": index.get(config.positive), "unknown": index.get(config.unknown_class),
            "grades": grades_of(list(class_names))}
