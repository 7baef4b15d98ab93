"""What every test shares: the tiny student, loaded once per session, and the `slow` marker on
the notebooks nbval runs (`make test-fast` leaves slow tests out, `make test` runs them).

The notebooks under tests/notebooks are fixtures of the runner's tests, not tests: nbval
must not collect them. tests/browser is the real-browser suite, which needs Chromium and
Playwright: `make test-browser` runs it (`pytest tests/browser`), `make test` leaves it out."""

from pathlib import Path

import pytest

from teachable.models.student import Student
from teachable.parameters import StudentParameters

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
