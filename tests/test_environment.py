"""The set-up files agree: pyproject, the lock constraints.txt, environment.yml, course.py, README and CI."""
import importlib.metadata
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import course  # noqa: E402  (course.py at the repository's root)

CONDA_NAMES = {"pytorch": "torch"}
# environment.yml's pip section as it was when `conda env create` failed on it (issue 15).
REJECTED_PIP_SECTION = "--no-deps\n-e .\n"


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def pyproject_requirements() -> list[Requirement]:
    project = pyproject()
    every = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    return [Requirement(d) for d in every]


def conda_dependencies() -> dict[str, str]:
    """name -> pin of the conda dependencies (the pip sub-list and python/pip themselves excluded)."""
    found = {}
    text = (ROOT / "environment.yml").read_text()
    for line in text[text.index("\ndependencies:"):].splitlines():
        match = re.fullmatch(r"  - ([A-Za-z0-9_.-]+)(?:=([^\s#]+))?\s*", line)
        if match and match.group(1) not in ("python", "pip"):
            found[canonicalize_name(CONDA_NAMES.get(match.group(1), match.group(1)))] = match.group(2)
    return found


def conda_pip_section() -> str:
    text = (ROOT / "environment.yml").read_text()
    section = text[text.index("  - pip:\n") + len("  - pip:\n"):]
    return "".join(line.strip()[2:] + "\n" for line in section.splitlines() if line.strip().startswith("- "))


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / course.LOCK).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


PIP_PARSER = """
import sys
from pip._internal.exceptions import RequirementsFileParseError
from pip._internal.network.session import PipSession
from pip._internal.req.req_file import parse_requirements
try:
    list(parse_requirements(sys.argv[1], session=PipSession()))
except RequirementsFileParseError as error:
    sys.exit(str(error))
"""


def pip_requirement_file_errors(text: str, tmp_path: Path) -> str:
    """What pip's own requirements-file parser rejects in ``text`` (empty when pip accepts every line).

    In a child process: pip's internals import distutils, which must not precede setuptools here.
    """
    path = tmp_path / "requirements.txt"
    path.write_text(text)
    result = subprocess.run([sys.executable, "-c", PIP_PARSER, str(path)], capture_output=True, text=True,
                            timeout=120)
    return "" if result.returncode == 0 else result.stderr.strip().splitlines()[-1]


def test_environment_yml_lists_the_pyproject_dependencies():
    assert set(conda_dependencies()) == {canonicalize_name(r.name) for r in pyproject_requirements()}


def test_pip_accepts_every_line_of_the_conda_pip_section(tmp_path):
    assert conda_pip_section().strip(), "environment.yml must install course_lib itself through pip"
    assert pip_requirement_file_errors(conda_pip_section(), tmp_path) == ""
    assert "--no-deps" in pip_requirement_file_errors(REJECTED_PIP_SECTION, tmp_path)


def test_every_dependency_is_locked_and_conda_pins_agree():
    pins = lock_pins()
    applying = [r for r in pyproject_requirements() if r.marker is None or r.marker.evaluate()]
    assert {canonicalize_name(r.name) for r in applying} <= set(pins)
    assert all(r.specifier.contains(pins[canonicalize_name(r.name)], prereleases=True) for r in applying)
    assert pins["torch"] == "2.13.0", "torch must stay pinned to the local CPU build"
    assert conda_dependencies() == {name: pins[name] for name in conda_dependencies()}


def test_the_lock_covers_every_installed_transitive_dependency():
    """Walk the installed requirements of course_lib[lab,test,instructor]: each must be pinned, to the installed version."""
    pins, missing, differing = lock_pins(), [], []
    pending, seen = [Requirement(f"course_lib[{','.join(course.LOCKED_EXTRAS)}]")], set()
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if (name, tuple(sorted(requirement.extras))) in seen:
            continue
        seen.add((name, tuple(sorted(requirement.extras))))
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
            continue
        if name != "course-lib":
            if name not in pins:
                missing.append(name)
            elif Requirement(f"x=={pins[name]}").specifier != Requirement(f"x=={distribution.version}").specifier \
                    and not distribution.version.startswith(pins[name] + "+"):
                differing.append(f"{name} {distribution.version} (lock: {pins[name]})")
        for text in distribution.requires or []:
            dependency = Requirement(text)
            if dependency.marker is None or any(dependency.marker.evaluate({"extra": extra})
                                                for extra in requirement.extras or {""}):
                pending.append(dependency)
    assert not missing, f"installed dependencies absent from {course.LOCK}: {sorted(set(missing))}"
    assert not differing, f"installed versions differ from {course.LOCK}: {differing}"


def test_lock_names_its_refresh_command():
    assert "python3 course.py lock" in (ROOT / course.LOCK).read_text().split("\n\n")[0]
    assert "python3 course.py lock" in (ROOT / "README.md").read_text()


def test_course_py_installs_each_commands_extras_from_the_lock(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(course, "STAMP", tmp_path / "stamp.json")
    monkeypatch.setattr(course, "ensure_venv", lambda: Path(sys.executable))
    monkeypatch.setattr(course, "install", lambda python, project: calls.append(project))
    course.ensure_installed(course.EXTRAS["lab"])
    course.ensure_installed(course.EXTRAS["lab"])          # nothing new to install: no second call
    course.ensure_installed(course.EXTRAS["test"])
    assert calls == [f"{ROOT}[lab]", f"{ROOT}[instructor,lab,test]"]
    assert set(course.EXTRAS["test"]) == set(course.LOCKED_EXTRAS)


# `pip config list` as pip prints it: the index from a file, find-links from a file and from PIP_FIND_LINKS.
PIP_CONFIG_LISTING = """\
:env:.default-timeout='180'
:env:.find-links='/opt/wheels'
global.extra-index-url='file:///opt/pypi/simple\\nfile:///opt/pypi-more/simple'
global.find-links='/srv/overridden'
global.index-url='https://mirror.example/simple'
download.find-links='/srv/other-command'
"""


class FakeRun:
    """subprocess.run for course.install: records each command; `pip config list` prints PIP_CONFIG_LISTING."""

    def __init__(self, failing: str | None = None):
        self.calls, self.failing = [], failing

    def __call__(self, args, **kwargs):
        self.calls.append(args)
        if self.failing in args:
            raise subprocess.CalledProcessError(2, args)
        return subprocess.CompletedProcess(args, 0, stdout=PIP_CONFIG_LISTING if "config" in args else "")


def test_uv_gets_pips_indexes_find_links_and_constraints(monkeypatch):
    monkeypatch.setattr(course.subprocess, "run", FakeRun())
    assert course.uv_options_from_pip_config(Path("python")) == [
        "--index-url", "https://mirror.example/simple",
        "--extra-index-url", "file:///opt/pypi/simple", "--extra-index-url", "file:///opt/pypi-more/simple",
        "--find-links", "/opt/wheels"]          # PIP_FIND_LINKS over the file's; another command's section ignored


def test_install_uses_uv_with_the_lock_and_pips_settings(tmp_path, monkeypatch):
    run, python, project = FakeRun(), tmp_path / "python", f"{ROOT}[lab]"
    monkeypatch.setattr(course, "VENV", tmp_path)
    monkeypatch.setattr(course.subprocess, "run", run)
    course.install(python, project)
    get_uv, _config, uv = run.calls
    assert get_uv[-1] == course.UV
    assert uv[:4] == [str(python), "-m", "uv", "pip"]
    assert uv[-4:] == ["-c", str(ROOT / course.LOCK), "-e", project]
    assert uv[uv.index("--find-links") + 1] == "/opt/wheels"
    assert list(tmp_path.iterdir()) == [], "uv's cache is removed"


@pytest.mark.parametrize("command", ["lab", "test"])
def test_commands_keep_the_bytecode_that_the_install_leaves_to_the_first_import(tmp_path, monkeypatch, command):
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    env = course.command_environment(command)
    assert "PYTHONDONTWRITEBYTECODE" not in env and env["PATH"] == os.environ["PATH"]
    assert env.get("OMP_NUM_THREADS") == ("1" if command == "test" else None)
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert course.command_environment("test")["OMP_NUM_THREADS"] == "4", "a thread count the user set is kept"
    # and the child really writes bytecode: a module imported under that environment leaves its .pyc
    module = tmp_path / "course_bytecode_probe.py"
    module.write_text("VALUE = 1\n")
    subprocess.run([sys.executable, "-c", "import course_bytecode_probe"], cwd=module.parent, env=env, check=True)
    assert list((module.parent / "__pycache__").glob("course_bytecode_probe.*.pyc"))


@pytest.mark.parametrize("failing", [course.UV, "uv"])
def test_install_falls_back_to_pip_when_uv_cannot_install(tmp_path, monkeypatch, failing):
    run, python, project = FakeRun(failing), tmp_path / "python", f"{ROOT}[lab]"
    monkeypatch.setattr(course, "VENV", tmp_path)
    monkeypatch.setattr(course.subprocess, "run", run)
    course.install(python, project)
    assert run.calls[-1] == [str(python), "-m", "pip", "install", "--quiet", "-c", str(ROOT / course.LOCK),
                             "-e", project]
    assert list(tmp_path.iterdir()) == []


def test_the_library_imports_without_jupyter_or_the_test_tools():
    """`pip install .` brings only the runtime dependencies: no course_lib module outside authoring may need more."""
    blocked = ["jupyterlab", "jupyter_server", "ipywidgets", "IPython", "ipykernel", "nbformat", "nbclient",
               "nbgrader", "pytest", "nbval"]
    script = textwrap.dedent(f"""
        import importlib, pkgutil, sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {blocked!r}:
                    raise ImportError(f"blocked: {{name}}", name=name)
        sys.meta_path.insert(0, Block())
        import course_lib
        for module in pkgutil.walk_packages(course_lib.__path__, "course_lib."):
            if module.name not in ("course_lib.authoring", "course_lib.__main__"):
                importlib.import_module(module.name)
        from course_lib.__main__ import main
        assert main(["build-notebooks", "--solutions", "{ROOT / 'solutions'}", "--check"]) == 1
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "build-notebooks needs nbformat: pip install 'course_lib[instructor]'" in result.stderr


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^(python3 course\.py \w+)\s*(?:#.*)?$", readme, flags=re.MULTILINE)
    assert "python3 course.py lab" in commands and "python3 course.py test" in commands
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert "python3 course.py test" in ci_lines
