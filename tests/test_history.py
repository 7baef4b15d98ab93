"""A run's history: every invocation of `run` appended to `runs/<run>/history.jsonl`, on the
stand-in phase notebooks of `tests/notebooks/` (real papermill, real kernels)."""

from datetime import datetime

import pytest
from test_runner import copy_notebooks, date_outputs_ahead, run, write_parameters

from teachable.pipeline.history import load_history, parameters_sha256
from teachable.pipeline.provenance import Provenance
from teachable.records.layout import RunLayout


def test_history_keeps_two_invocations_in_order_the_second_skipping_everything(tmp_path):
    notebooks = copy_notebooks(tmp_path)
    params = write_parameters(tmp_path / "trial.yaml")
    layout = RunLayout(tmp_path / "runs" / "trial")

    assert run(params, notebooks) == 0
    first_line = layout.history.read_text()
    date_outputs_ahead(layout.folder)
    assert run(params, notebooks) == 0

    first, second = load_history(layout)
    assert layout.history.read_text().startswith(first_line), "append-only: the first stays"
    assert [phase.status for phase in first.phases] == ["ran"]
    assert [phase.status for phase in second.phases] == ["skipped"]
    assert second.phases[0].reason.startswith("up to date (ran until ")
    assert first.phases[0].reason == "no finished run on record"
    assert first.phases[0].units["student episodes"] == 3  # phase0.n_tasks of the parameters
    assert second.phases[0].units is None  # a phase that is skipped counts none
    started = [datetime.fromisoformat(i.started_at) for i in (first, second)]
    finished = [datetime.fromisoformat(i.finished_at) for i in (first, second)]
    assert started[0] <= finished[0] <= started[1] <= finished[1]
    for invocation in (first, second):
        assert invocation.outcome == "finished"
        assert invocation.command.startswith("python -m teachable run ")
        assert str(params) in invocation.command and "--phases 0" in invocation.command
    provenance = Provenance.load(layout)  # still the last invocation, as before
    assert provenance.started_at == second.started_at
    assert second.git == provenance.git
    assert first.parameters_sha256 == second.parameters_sha256
    assert second.parameters_sha256 == parameters_sha256(provenance.parameters)


def test_a_changed_parameter_changes_the_digest_in_the_history(tmp_path):
    notebooks = copy_notebooks(tmp_path)
    params = write_parameters(tmp_path / "trial.yaml", n_tasks=3)
    layout = RunLayout(tmp_path / "runs" / "trial")
    assert run(params, notebooks) == 0
    write_parameters(params, n_tasks=4)
    assert run(params, notebooks) == 0

    first, second = load_history(layout)
    assert first.parameters_sha256 != second.parameters_sha256
    assert second.phases[0].reason == "its parameters changed"
    assert second.phases[0].units["student episodes"] == 4


def test_an_unreadable_history_line_is_named(tmp_path):
    layout = RunLayout(tmp_path / "runs" / "trial")
    layout.folder.mkdir(parents=True)
    layout.history.write_text('{"command": "x"}\n')
    with pytest.raises(ValueError, match=f"{layout.history}, line 1"):
        load_history(layout)
