"""`kit new`: templates render (or fail loudly), never clobber a folder, ship in the wheel, and their smoke tests pass."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from kit.cli import cli
from kit.errors import KitError
from kit.project import render_template, template_names

REPO = Path(__file__).resolve().parents[1]


def test_templates_are_listed():
    assert {"baseline", "transfer", "kfold", "notebook"} <= set(template_names())


@pytest.mark.parametrize("template", ["baseline", "transfer", "kfold", "notebook"])
def test_new_project_has_settings_readme_gitignore_smoke_test_and_data(tmp_path, template):
    result = CliRunner().invoke(cli, ["new", str(tmp_path / "p"), "--template", template])
    assert result.exit_code == 0, result.output
    p = tmp_path / "p"
    for name in ("kit.toml", "README.md", ".gitignore", "tests/test_smoke.py", "data/train.csv",
                 "data/sample_submission.csv"):
        assert (p / name).is_file(), name
    assert "$" not in (p / "kit.toml").read_text() and "kit run --config kit.toml" in (p / "README.md").read_text()
    assert "runs/" in (p / ".gitignore").read_text()


def test_new_refuses_a_non_empty_folder_without_force(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "notes.txt").write_text("mine")
    result = CliRunner().invoke(cli, ["new", str(tmp_path / "p")])
    assert result.exit_code == 2 and "exists and is not empty; pass --force" in result.output
    assert CliRunner().invoke(cli, ["new", str(tmp_path / "p"), "--force"]).exit_code == 0
    assert (tmp_path / "p" / "notes.txt").read_text() == "mine"


def test_missing_variable_fails_loudly(tmp_path, monkeypatch):
    import kit.project as project

    broken = tmp_path / "tpl"
    (broken / "bad").mkdir(parents=True)
    (broken / "__init__.py").write_text("")
    (broken / "bad" / "template.toml").write_text("[variables]\n")
    (broken / "bad" / "x.txt.tmpl").write_text("hello $nobody\n")

    class Files:
        def __call__(self, package):
            return broken

    monkeypatch.setattr(project.resources, "files", Files())
    with pytest.raises(KitError, match=r"template bad/x.txt.tmpl: no value for variable \$nobody"):
        render_template("bad", tmp_path / "out", with_data=False)


def test_wheel_ships_the_templates(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
                   check=True, capture_output=True)
    wheel = next(tmp_path.glob("kit-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for template in ("baseline", "transfer", "kfold", "notebook"):
        for name in ("template.toml", "kit.toml.tmpl", "README.md.tmpl", "gitignore.tmpl", "tests/test_smoke.py.tmpl"):
            assert f"kit/templates/{template}/{name}" in names
    assert "kit/templates/notebook/notebook.ipynb" in names
    # Installed from the wheel alone (dependencies from this environment), `kit new` renders every template.
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    code = ("import sys, kit, kit.project as p; assert str(kit.__file__).startswith(sys.argv[1]), kit.__file__; "
            "[p.render_template(t, sys.argv[2] + '/' + t, with_data=False) for t in p.template_names()]; "
            "print(p.template_names())")
    out = subprocess.run([sys.executable, "-c", code, str(target), str(tmp_path / "made")], check=True,
                         capture_output=True, text=True, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
                         cwd=tmp_path).stdout
    assert "baseline" in out and (tmp_path / "made" / "transfer" / "kit.toml").is_file()


@pytest.mark.parametrize("template", ["baseline", "transfer", "kfold", "notebook"])  # notebook: executes it
def test_generated_projects_smoke_test_passes(tmp_path, template):
    CliRunner().invoke(cli, ["new", str(tmp_path / "p"), "--template", template], catch_exceptions=False)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                            cwd=tmp_path / "p", capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "1 passed" in result.stdout
