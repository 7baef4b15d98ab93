"""The runner's live progress: the kernel's stderr, as the report receives it, shown one line per
bar with its rate and ETA, redrawn in place on a terminal and as plain lines in a log; and each
warning once in a kernel."""

from __future__ import annotations

import io
import os
import re
import sys
import warnings

import pytest

from teachable.pipeline.progress import TerminalProgress, TextProgress, show_each_warning_once

WARNING = (
    "/venv/transformers/modeling_utils.py:3314: FutureWarning: `is_gradient_checkpointing` is "
    "deprecated\n  warnings.warn(\n"
)
# What a phase kernel's stderr carries (real chunks of a report): a bar with a warning in its
# middle, a bar that leaves its line, one that vanishes (leave=False).
KERNEL_STDERR = [
    "\rdose calibration:   0%|          | 0/12 [00:00<?, ?unit/s]",
    WARNING,
    "\rdose calibration:  92%|█████████▏| 11/12 [00:01<00:00, 10.55unit/s]",
    "\rdose calibration: 100%|██████████| 12/12 [00:01<00:00, 10.46unit/s]",
    "\n",
    "\rrollouts:   0%|          | 0/8 [00:00<?, ?it/s]",
    "\rrollouts:  50%|█████     | 4/8 [00:02<00:02,  1.90it/s]",
    "\r                                               ",
    "\r",
]
FINISHED = "  dose calibration: 100%|██████████| 12/12 [00:01<00:00, 10.46unit/s]\n"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fed(chunks: list[str], live: bool, clock: Clock | None = None) -> str:
    out = io.StringIO()
    progress = TerminalProgress(out, live=live, clock=clock or Clock())
    for chunk in chunks:
        progress.write(chunk)
    progress.close()
    return out.getvalue()


def test_in_a_log_each_bar_that_ends_is_one_line_and_warnings_stay_in_the_report():
    shown = fed(KERNEL_STDERR, live=False)
    rollouts = "  rollouts:  50%|█████     | 4/8 [00:02<00:02,  1.90it/s]\n"
    assert shown == FINISHED + rollouts
    assert "\r" not in shown and "Warning" not in shown


def test_in_a_log_a_running_bar_prints_at_most_once_per_interval():
    clock = Clock()
    out = io.StringIO()
    progress = TerminalProgress(out, live=False, interval=60.0, clock=clock)
    for step in range(1, 5):  # 25 s a step: a line at 75 s, none at 25, 50 or 100 s
        clock.now = seconds = step * 25
        elapsed = f"{seconds // 60:02d}:{seconds % 60:02d}"
        progress.write(f"\rtraining matrix: {step * 20}%|██ | {step}/5 [{elapsed}<00:25, 25s/unit]")
    assert out.getvalue() == "  training matrix: 60%|██ | 3/5 [01:15<00:25, 25s/unit]\n"


def test_on_a_terminal_a_bar_is_redrawn_in_place_kept_when_it_ends_and_erased_when_it_vanishes():
    shown = fed(KERNEL_STDERR, live=True)
    lines = shown.split("\n")
    assert len(lines) == 2, "one finished line, then the vanished bar's erased line"
    assert lines[0].count("\r  dose calibration:") == 3
    assert lines[0].endswith("10.46unit/s]\x1b[K")
    assert lines[1].endswith("\r\x1b[K"), "the leave=False bar erases itself"
    assert "Warning" not in shown


def test_a_bar_cut_between_two_writes_is_drawn_whole():
    chunks = ["\rlabeling:  40%|████      | 2/5 [00:0", "1<00:01, 1.99unit/s]", "\n"]
    assert fed(chunks, live=False) == "  labeling:  40%|████      | 2/5 [00:01<00:01, 1.99unit/s]\n"


def test_a_bar_left_open_when_the_kernel_stops_keeps_its_last_state():
    chunks = ["\rmodels:  58%|█████▊    | 11/19 [00:01<00:00, 10.14unit/s]"]
    assert fed(chunks, live=True).endswith("10.14unit/s]\x1b[K\n")
    assert (
        fed(chunks, live=False) == "  models:  58%|█████▊    | 11/19 [00:01<00:00, 10.14unit/s]\n"
    )


def test_real_nested_text_bars_show_one_line_each_without_cursor_moves():
    out = io.StringIO()
    progress = TerminalProgress(out, live=False)
    with TextProgress(total=2, desc="units", unit="unit", file=progress, mininterval=0) as units:
        for _ in range(2):
            for _ in TextProgress(range(3), desc="steps", leave=False, file=progress):
                pass
            units.update()
    progress.close()
    lines = out.getvalue().splitlines()
    assert [line.split(":")[0].strip() for line in lines] == ["steps", "steps", "units"]
    assert lines[-1].startswith("  units: 100%|") and "2/2 [" in lines[-1]
    assert "\x1b[" not in out.getvalue()


class TerminalOfNoSize(io.StringIO):
    """A stderr that is a new pseudo-terminal (0 x 0, as under `script` or some CI runners),
    whose writes are kept."""

    encoding = "utf-8"

    def __init__(self) -> None:
        super().__init__()
        self.leader, self.follower = os.openpty()

    def fileno(self) -> int:
        return self.follower


def test_a_text_bar_draws_where_the_kernels_stderr_is_a_terminal_of_no_size(monkeypatch):
    stderr = TerminalOfNoSize()
    monkeypatch.setattr(sys, "stderr", stderr)
    for _ in TextProgress(range(3), desc="labeling", mininterval=0):
        pass
    os.close(stderr.leader), os.close(stderr.follower)
    assert re.search(r"labeling: 100%\|█+\| 3/3 \[", stderr.getvalue())


@pytest.fixture
def warnings_shown(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    shown: list[str] = []
    monkeypatch.setattr(warnings, "showwarning", lambda message, *rest: shown.append(str(message)))
    show_each_warning_once()
    return shown


def test_a_warning_raised_on_every_pass_of_a_loop_is_shown_once(warnings_shown):
    for _ in range(5):
        with warnings.catch_warnings():  # resets the registry, as transformers' code does
            warnings.simplefilter("always")
            warnings.warn("`is_gradient_checkpointing` is deprecated", FutureWarning, stacklevel=1)
    warnings.warn("another message", FutureWarning, stacklevel=1)
    assert warnings_shown == ["`is_gradient_checkpointing` is deprecated", "another message"]
