"""Settings assembled once: defaults < a recipe < a config file < flags given, or a run's own settings to resume;
a built-in dataset stands for DATA. The CLI only parses flags and calls assemble."""

from __future__ import annotations

from pathlib import Path

from .config import Config, load_config_file, make_config
from .datasets import dataset_folder
from .errors import ConfigError
from .recipes import get_recipe
from .resume import resume_config


BUDGET_EPOCHS_CAP = 500


def assemble(data=None, config_file=None, dataset=None, recipe=None, resume_run=None, **flags
             ) -> tuple[Config, Path | None]:
    """The run's Config, and the held-out answers when a built-in dataset was chosen. `flags` are the Config
    fields given on the command line (None: not given)."""
    if flags.get("channels") is not None:
        flags["channels"] = int(flags["channels"])
    if flags.pop("multi_label", None):  # --multi-label is --submission tags
        if flags.get("submission") not in (None, "tags"):
            raise ConfigError(f"--multi-label and --submission {flags['submission']}: choose one")
        flags["submission"] = "tags"
    if resume_run:
        if config_file or dataset or recipe:
            raise ConfigError("--resume takes the run's own settings; drop --config, --dataset and --recipe")
        return resume_config(resume_run, {"data": data, **flags}), None
    file_values = load_config_file(config_file) if config_file else {}
    if recipe:  # a recipe's settings sit under the config file's and the flags'
        chosen = get_recipe(recipe)
        file_values = {**chosen.settings, **file_values}
        dataset = dataset or (None if data or file_values.get("data") else chosen.dataset)
    answers = None
    if dataset:
        folder, answers = dataset_folder(dataset)
        data = str(folder)
    budget = flags.get("time_budget") or file_values.get("time_budget")  # given as a flag or in the config file
    if budget and flags.get("epochs") is None and "epochs" not in file_values:
        flags["epochs"] = BUDGET_EPOCHS_CAP  # the budget decides how many; --epochs would cap them
    config = make_config(file_values, data=data, **flags)
    if not config.data:
        raise ConfigError("give a DATA folder, --dataset NAME, or `data` in the --config file")
    return config, answers
