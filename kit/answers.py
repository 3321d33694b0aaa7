"""What a submission holds, decided from the sample submission before training: one label per row, one
probability per class, or — for a binary target scored by AUC or log loss — one probability, P(positive class).

A sample with a single value column of numbers within 0..1 on a two-class problem asks for a probability (Aerial
Cactus' 0.5, Histopathologic Cancer Detection's 0); the positive class is the one the sample names (a header
equal to a class), or the one that means yes (1, true, yes), or --positive CLASS. --submission overrides the
decision; --label-map asks for labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .config import Config
from .errors import ConfigError, DataError

YES = ("1", "true", "yes", "y", "positive", "pos")


@dataclass(frozen=True)
class Answer:
    kind: str  # "label", "probabilities" (one column per class) or "probability" (P(positive), binary)
    positive: str = ""  # the class whose probability a "probability" answer holds

    def describe(self) -> str:
        return {"label": "one label per row", "probabilities": "one probability per class",
                "probability": f"one probability per row, P({self.positive})"}[self.kind]


def decide_answer(sample: pd.DataFrame | None, class_names: list[str], config: Config, sample_name: str = ""
                  ) -> Answer:
    """The answer kind for this competition (see the module's docstring); refused with one line when the sample
    and the classes do not fit it."""
    kind = config.submission if config.submission != "auto" else _kind_from_sample(sample, class_names, config)
    if kind == "probability":
        if len(class_names) != 2:
            raise ConfigError(f"--submission probability: needs two classes, the data has {len(class_names)}")
        return Answer(kind, _positive(sample, class_names, config, sample_name))
    if kind == "probabilities" and sample is not None and set(sample.columns[1:]) != set(class_names):
        raise ConfigError("--submission probabilities: the sample needs one column per class after the id")
    return Answer(kind)


def _kind_from_sample(sample: pd.DataFrame | None, class_names: list[str], config: Config) -> str:
    if sample is None or config.label_map:
        return "label"
    if len(sample.columns) > 2:
        return "probabilities"
    if len(class_names) == 2 and len(sample.columns) == 2 and are_probabilities(sample.iloc[:, 1]):
        return "probability"
    return "label"


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
