"""The README is the user's guide: every `kit …` command and option it shows must exist (#20)."""

import re
import shlex
from pathlib import Path

import click
from click.testing import CliRunner

from kit.cli import cli

README = Path(__file__).resolve().parent.parent / "README.md"


def shown_commands() -> list[str]:
    """`kit …` lines of the README's code blocks and inline code, comments and placeholders aside."""
    text = README.read_text(encoding="utf-8")
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


def test_every_command_and_option_in_the_readme_exists():
    checked = 0
    for line in shown_commands():
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
    assert checked >= 40  # the README shows many commands: a parser that finds none would pass vacuously


def test_train_help_lists_every_option_once_under_sections():
    result = CliRunner().invoke(cli, ["train", "--help"], terminal_width=200)
    for heading in ("Data:", "Model:", "Training:", "Transfer learning:", "Hardware:", "Run folder:"):
        assert f"\n{heading}\n" in result.output
    for option in option_names(cli.commands["train"]) - {"-h"}:
        if option.startswith("--no-"):
            continue
        listed = re.findall(rf"^  (?:-\w, )?{re.escape(option)}(?![\w-])", result.output, re.M)
        assert len(listed) == 1, option
