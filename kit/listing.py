"""One way to print a listing (`kit runs`, `kit models`, `kit recipes`, `kit datasets list`): a header and aligned
columns for people, or CSV or JSON for programs, from the same rows."""

from __future__ import annotations

import csv
import io
import json

FORMATS = ("table", "csv", "json")


SCORE_COLUMNS = ("score", "val_accuracy")  # shown with four decimals in a table, so that they line up


def _cell(column: str, value) -> str:
    """A table cell: scores with four decimals, other numbers as short as they are, None as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}" if column in SCORE_COLUMNS else f"{value:g}"
    return str(value)


def format_rows(rows: list[dict], columns: list[str], fmt: str = "table") -> str:
    """rows (dicts keyed by column) as an aligned table with a header, as CSV, or as a JSON list of objects."""
    if fmt == "json":
        return json.dumps([{c: r.get(c) for c in columns} for r in rows], indent=2, default=str)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue().rstrip("\n")
    cells = [[_cell(c, r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in [columns] + cells)


def output_format(as_csv: bool, as_json: bool) -> str:
    """The --csv / --json flags as one format (both given: an error naming them)."""
    from .errors import ConfigError

    if as_csv and as_json:
        raise ConfigError("--csv and --json: choose one")
    return "csv" if as_csv else "json" if as_json else "table"


MODEL_COLUMNS = ["name", "kind", "optimizer", "learning_rate", "description"]
RECIPE_COLUMNS = ["name", "dataset", "model", "optimizer", "learning_rate", "batch_size", "epochs", "augment",
                  "notes", "published"]
DATASET_COLUMNS = ["name", "classes", "sizes", "status"]


def model_rows() -> list[dict]:
    """`kit models`: the models trained from scratch, then the pretrained backbones."""
    from .models import MODELS
    from .transfer import BACKBONES, photo_size

    rows = [{"name": name, "kind": "scratch", "optimizer": spec.optimizer, "learning_rate": f"{spec.learning_rate:g}",
             "description": spec.summary} for name, spec in MODELS.items()]
    return rows + [{"name": name, "kind": "backbone", "optimizer": "adamw", "learning_rate": "0.001",
                    "description": f"keras.applications.{b.constructor}, {b.image_size} px "
                                   f"({photo_size(b.image_size)} for larger photos), two-phase fine-tuning"}
                   for name, b in BACKBONES.items()]


def recipe_rows() -> list[dict]:
    """`kit recipes`: each tutorial's settings and the figure it published."""
    from .recipes import RECIPES

    rows = []
    for name, r in RECIPES.items():
        s = r.settings
        notes = ", ".join(n for n in ("frozen backbone" if s.get("fine_tune_epochs") == 0 else "",
                                      f"{s['head']} head" if "head" in s else "") if n)
        rows.append({"name": name, "dataset": r.dataset, "model": s["model"], "optimizer": s["optimizer"],
                     "learning_rate": f"{s['learning_rate']:g}", "batch_size": s["batch_size"], "epochs": s["epochs"],
                     "augment": s["augment"], "notes": notes, "published": r.published})
    return rows


def dataset_rows() -> list[dict]:
    """`kit datasets list`: each built-in dataset and whether it is in the Keras cache."""
    from .datasets import dataset_status

    return [{"name": name, "classes": info.classes, "sizes": info.sizes, "status": "cached" if cached else "not cached"}
            for name, info, cached in dataset_status()]
