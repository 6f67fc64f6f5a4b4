"""Packaging promises: pyproject and environment.yml agree, CI runs the README's test command."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _spec(requirement: str) -> str:
    return requirement.strip()[len(_name(requirement)):].replace(" ", "")


def test_pyproject_and_environment_yml_agree():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_deps = {_name(r): _spec(r) for r in project["dependencies"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda_deps = {}
    for entry in env["dependencies"]:
        items = entry["pip"] if isinstance(entry, dict) else [entry]
        for item in items:
            if item.startswith("-e") or _name(item) in ("python", "pip"):
                continue
            conda_deps[_name(item)] = _spec(item)
    assert conda_deps == pip_deps


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci and "make test" in readme and "make reproduce" in readme
    commands = [line.strip() for line in ci.splitlines() if line.strip() and not line.startswith("#")]
    assert commands[-1] == "make test"


def test_required_stack_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_name(r) for r in project["dependencies"]}
    required = {"tensorflow", "keras", "papermill", "nbval", "jupyterlab", "astropy", "matplotlib", "seaborn",
                "scikit-learn", "scipy", "galsim", "h5py", "pyyaml", "tqdm"}
    assert required <= names


def test_gitignore_covers_generated_content():
    ignored = (ROOT / ".gitignore").read_text().split()
    for entry in (".venv/", "data/raw/", "data/processed/", "data/runs/"):
        assert entry in ignored
