"""`kit new`: render a project template from kit.templates (the repository's top-level templates/ folder)."""

from __future__ import annotations

import string
from importlib import resources
from pathlib import Path

import tomllib

from . import __version__
from .datasets import export_arrays, load_digits_arrays
from .errors import ConfigError, KitError
from .outputs import record_written, written_by_kit
from .runs import atomic_write


def template_names() -> list[str]:
    root = resources.files("kit.templates")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "template.toml").is_file())


def render_template(name: str, out_dir, force: bool = False, with_data: bool = True
                    ) -> tuple[list[Path], list[Path]]:
    """Copy a template into out_dir; *.tmpl files are filled in ($name variables) and lose the suffix.

    A missing variable is an error naming the file; an existing non-empty folder needs force, and even then a
    file kit did not write (or that was changed since) is kept, never replaced. Returns (written, kept).
    """
    root = resources.files("kit.templates") / name
    if name not in template_names():
        raise ConfigError(f"--template {name}: unknown; choose one of {', '.join(template_names())}")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not force:
        raise KitError(f"{out}: exists and is not empty; pass --force to write into it")
    meta = tomllib.loads((root / "template.toml").read_text(encoding="utf-8"))
    variables = {"project_name": out.resolve().name, "kit_version": __version__, **meta.get("variables", {})}
    rendered, kept = [], []
    for source, rel in _walk(root):
        if rel == "template.toml":
            continue
        text = source.read_text(encoding="utf-8")
        if rel.endswith(".tmpl"):
            rel = rel[: -len(".tmpl")]
            try:
                text = string.Template(text).substitute(variables)
            except KeyError as e:
                raise KitError(f"template {name}/{rel}.tmpl: no value for variable ${e.args[0]}") from None
            except ValueError as e:
                raise KitError(f"template {name}/{rel}.tmpl: {e}") from None
        if Path(rel).name == "gitignore":
            rel = str(Path(rel).with_name(".gitignore"))
        target = out / rel
        if (target.exists() or target.is_symlink()) and not written_by_kit(target):
            kept.append(target)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(target, encoding="utf-8") as f:
            f.write(text)
        record_written(target)
        rendered.append(target)
    if with_data:

        try:
            export_arrays(load_digits_arrays(), out / "data", layout="av", limit=300, answers=out / "answers.csv",
                          force=force)
        except KitError:  # the user's own data/ or answers.csv: kept
            kept += [p for p in (out / "data", out / "answers.csv") if p.exists()]
    return rendered, kept


def _walk(root, prefix: str = ""):
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        rel = f"{prefix}{entry.name}"
        if entry.is_dir():
            if entry.name != "__pycache__":
                yield from _walk(entry, rel + "/")
        else:
            yield entry, rel
