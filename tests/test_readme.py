"""The README is the user's guide: every `kit …` command and option it shows must exist (#20)."""

import re
import shlex
from pathlib import Path

import click
from click.testing import CliRunner

from kit.cli import cli

README = Path(__file__).resolve().parent.parent / "README.md"
DOCS = sorted((README.parent / "docs").glob("*.md"))


def shown_commands(path: Path = README) -> list[str]:
    """`kit …` lines of a guide's code blocks and inline code, comments and placeholders aside."""
    text = path.read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    lines = [line for block in blocks for line in block.splitlines()]
    lines += re.findall(r"`(kit [^`]+)`", text)
    commands = []
    for line in lines:
        for part in re.split(r"&&|\|", line.split(" # ")[0]):
            part = part.strip()
            if part.startswith(("kit ", ".venv/bin/kit ")):
                commands.append(part.split("kit ", 1)[1])
    return commands


def option_names(command: click.Command) -> set[str]:
    return {o for p in command.params if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)} | \
        {"--help", "-h"}


def test_every_command_and_option_in_the_readme_and_docs_exists():
    checked = {}
    for path in [README, *DOCS]:
        checked[path.name] = check_commands(shown_commands(path))
    # the README shows the five tasks and every command, the docs many more: a parser that found none would pass
    assert checked["README.md"] >= 15 and sum(checked.values()) >= 60, checked


def check_commands(lines: list[str]) -> int:
    """Assert each `kit …` line names commands and options that exist; return how many lines were checked."""
    checked = 0
    for line in lines:
        words = shlex.split(line.replace("…", ""))
        command = cli
        while words and isinstance(command, click.Group) and words[0].startswith("-"):
            assert words[0] in option_names(command), f"kit {line}: {words[0]}"
            words = words[1:]
        while words and isinstance(command, click.Group):
            name = words.pop(0)
            assert name in command.commands or name.isupper(), f"kit {line}: no command {name!r}"
            command = command.commands.get(name, command)
        for word in words:
            if word.startswith("--") or re.fullmatch(r"-[a-z]", word):
                assert word.split("=")[0] in option_names(command), f"kit {line}: {command.name} has no {word}"
        checked += 1
    return checked


def test_the_readme_is_a_guide_whose_links_and_settings_work():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    for link in re.findall(r"\]\(((?:docs|benchmarks)/[^)#]+)", text):
        assert (README.parent / link).is_file(), link
    for doc in DOCS:
        for link in re.findall(r"\]\(([^)#:]+\.(?:md|png))", doc.read_text(encoding="utf-8")):
            assert (doc.parent / link).is_file(), f"{doc.name}: {link}"
    from kit.config import make_config

    toml = re.search(r"```toml\n(.*?)```", text, re.S).group(1)
    import tomllib

    make_config(tomllib.loads(toml))  # the config-file example holds only settings kit knows, with valid values


def test_train_help_lists_every_option_once_under_sections():
    result = CliRunner().invoke(cli, ["train", "--help"], terminal_width=200)
    for heading in ("Data:", "Model:", "Training:", "Transfer learning:", "Hardware:", "Run folder:"):
        assert f"\n{heading}\n" in result.output
    for option in option_names(cli.commands["train"]) - {"-h"}:
        if option.startswith("--no-"):
            continue
        listed = re.findall(rf"^  (?:-\w, )?{re.escape(option)}(?![\w-])", result.output, re.M)
        assert len(listed) == 1, option
