"""The set-up files agree: pyproject, constraints.txt, environment.yml, README and CI."""
import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
CONDA_NAMES = {"pytorch": "torch"}


def requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower()


def pyproject_dependencies() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    every = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    return {requirement_name(d) for d in every}


def conda_dependencies() -> dict[str, str]:
    """name -> pin of the conda dependencies (the pip sub-list and python/pip themselves excluded)."""
    found = {}
    text = (ROOT / "environment.yml").read_text()
    for line in text[text.index("\ndependencies:"):].splitlines():
        match = re.fullmatch(r"  - ([A-Za-z0-9_.-]+)(?:=([^\s#]+))?\s*", line)
        if match and match.group(1) not in ("python", "pip"):
            found[CONDA_NAMES.get(match.group(1), match.group(1)).lower()] = match.group(2)
    return found


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def test_environment_yml_lists_the_pyproject_dependencies():
    assert set(conda_dependencies()) == pyproject_dependencies()


def test_every_dependency_is_pinned_in_constraints_and_conda_agrees():
    pins = constraints()
    assert pyproject_dependencies() <= set(pins)
    assert pins["torch"] == "2.13.0", "torch must stay pinned to the local CPU build"
    assert conda_dependencies() == {name: pins[name] for name in conda_dependencies()}


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^(python3 course\.py \w+)\s*(?:#.*)?$", readme, flags=re.MULTILINE)
    assert "python3 course.py lab" in commands and "python3 course.py test" in commands
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert "python3 course.py test" in ci_lines
