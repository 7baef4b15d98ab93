"""What every test shares: the tiny student, loaded once per session, and the `slow` marker on
the notebooks nbval runs (`make test-fast` leaves slow tests out, `make test` runs them).

The notebooks under tests/notebooks are fixtures of the runner's tests, not tests: nbval
must not collect them. tests/browser is the real-browser suite, which needs Chromium and
Playwright: `make test-browser` runs it (`pytest tests/browser`), `make test` leaves it out."""

from pathlib import Path

import pytest

from teachable.models.instrument import Instrument
from teachable.models.reference_states import anchor_states, probe_states
from teachable.models.student import Student
from teachable.parameters import StudentParameters
from teachable.records.dose import Dose
from teachable.vocabulary import FORMATS
from teachable.world.tasks import task_suite

collect_ignore = ["notebooks", "browser"]

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.fixture(scope="session")
def student() -> Student:
    """The tiny student: a 2-layer random Llama scoring 16 states per pass. A Student's
    weights are fixed (training and adapters make new Students), so every test can share it."""
    return Student.load(StudentParameters(model="tiny", batch_size=16))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every notebook cell nbval collects is slow: each notebook runs a smoke phase."""
    for item in items:
        if item.path.is_relative_to(NOTEBOOKS):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def instrument() -> Instrument:
    """A training instrument as Phase 1A hands it on, with a pinned dose for every format:
    anchored on the expert states of one warm-up task (two per step), probed at two states of
    two of four GoToLocal tasks that no training test trains on and of two retention tasks."""
    probes = probe_states(
        [("BabyAI-GoToLocal-v0", seed) for seed in (901, 907, 911, 913)],
        task_suite("retention", 2, ["GoToLocal"], 0).tasks,
        2,
        2,
        0,
    )
    dose = Dose(learning_rate=1e-3, steps=2, anchor_weight=5.0)
    return Instrument(
        doses=dict.fromkeys(FORMATS, dose),
        anchors=tuple(anchor_states(["GoToLocal"], 0, 1)),
        per_step=2,
        probes=tuple(probes),
    )
