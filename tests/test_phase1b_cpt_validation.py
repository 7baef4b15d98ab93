"""Phase 1B: micro-training on the tiny student with its wrong-target control, the gate's
three-way verdicts on synthetic panels, and the runner's exit codes on the gate's outcome (real
papermill, on a stand-in notebook)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from labeled_rows import labeled_rows

from teachable.__main__ import main
from teachable.measure.cpt_gate import gate
from teachable.measure.intervals import spearman
from teachable.measure.reliability import split_half
from teachable.models.instrument import Instrument
from teachable.models.micro_training import (
    control_target,
    expert_logprobs,
    micro_adapter,
    result_key,
    validation_outcomes,
)
from teachable.models.student import Student
from teachable.models.supervision import sft_example
from teachable.models.workers import LocalWorkers
from teachable.parameters import Parameters
from teachable.phases.phase1b_cpt_validation import choose_panel, validate_cpt
from teachable.records.cpt_validation import CPTGate
from teachable.records.estimate import Estimate
from teachable.records.layout import Phase1BLayout, RunLayout
from teachable.records.store import read_json, read_jsonl, write_json, write_jsonl
from teachable.records.verdicts import Verdicts
from teachable.reports.phase1b import (
    comparator_chart,
    comparator_frame,
    delta_chart,
    noise_frame,
    panel_frame,
)
from teachable.vocabulary import ACTIONS, FORMATS, QUADRANTS

FIXTURES = Path(__file__).parent / "notebooks" / "gate"
TASKS = [("GoToLocal", 2), ("GoToLocal", 3), ("PickupLoc", 2), ("PickupLoc", 3)]
PHASE1B = {
    "n_per_quadrant": 1,
    "n_validation_rollouts": 3,
    "max_steps": 4,
    "temperature": 5.0,  # the tiny student is near-deterministic; its draws must matter here
    "bootstrap_resamples": 200,
}


def _params(root: Path, steps: int = 2, learning_rate: float = 1e-2, **phase1b) -> Parameters:
    """The micro-training's steps and learning rate are Phase 1B's pinned dose, unanchored."""
    dose = {"learning_rate": learning_rate, "steps": steps, "anchor_weight": 0.0}
    return Parameters.model_validate(
        {
            "run": {"name": "micro", "seed": 1, "output_root": str(root)},
            "student": {"model": "tiny", "batch_size": 16},
            "lora": {"r": 4, "alpha": 8},
            "phase1b": {**PHASE1B, "dose": dose, **phase1b},
        }
    )


def tooled(params: Parameters, instrument: Instrument) -> Instrument:
    """The shared test instrument with Phase 1B's pinned dose in every format."""
    return replace(instrument, doses=dict.fromkeys(FORMATS, params.phase1b.dose))


@pytest.fixture(scope="module")
def rows(student):
    """The last two decisions of four tasks: two snapshots in each quadrant."""
    return labeled_rows(student, TASKS, per_task=2)


# --- micro-training ------------------------------------------------------------------------------


@pytest.mark.slow
def test_micro_training_raises_the_probability_of_the_target_action(
    student, rows, tmp_path, instrument
):
    for format, row in zip(FORMATS, rows, strict=False):
        params = _params(tmp_path, format=format, steps=5)
        prompt = sft_example(row, format).prompt
        target = ACTIONS.index(row.expert_action)
        before = student.action_probabilities([prompt])[0][target]
        trained = micro_adapter(
            student, row, params.phase1b, params.lora, tooled(params, instrument)
        )[0]
        after = trained.student.action_probabilities([prompt])[0][target]
        assert after > 10 * before and after > before + 0.01, (format, row.id)
        assert trained.steps == 5 and trained.losses[-1] < trained.losses[0]


# --- the wrong-target control --------------------------------------------------------------------


def test_the_control_target_is_a_wrong_action_drawn_per_snapshot_and_seed(student):
    """On a panel of 24 snapshots from six tasks, every control target differs from a*, the
    same (snapshot, seed) draws the same one, and over many seeds each wrong action comes up
    about as often as the others."""
    tasks = [("GoToLocal", 2), ("GoToLocal", 3), ("GoToLocal", 4), ("PickupLoc", 2)]
    tasks += [("PickupLoc", 3), ("OpenDoor", 3)]
    panel = choose_panel(labeled_rows(student, tasks, per_task=4), n_per_quadrant=6, seed=1)
    assert len(panel) == 24 and len({row.expert_action for row in panel}) >= 4
    for seed in range(20):
        targets = [control_target(row, seed) for row in panel]
        assert all(t != row.expert_action for t, row in zip(targets, panel, strict=True))
        assert all(t in ACTIONS for t in targets)
        assert targets == [control_target(row, seed) for row in panel], "deterministic"
    assert len({control_target(row, 1) for row in panel}) >= 3, "drawn per snapshot"
    row = panel[0]
    counts = Counter(control_target(row, seed) for seed in range(1000))
    assert set(counts) == set(ACTIONS) - {row.expert_action}
    assert all(150 <= count <= 250 for count in counts.values()), counts


def test_the_control_trains_the_same_example_and_dose_on_the_wrong_target(
    student, rows, tmp_path, monkeypatch, instrument
):
    trainings = []
    monkeypatch.setattr(
        Instrument, "train", lambda *args, **kwargs: trainings.append(args[1:]) or (None, None)
    )
    params = _params(tmp_path, format="hint")
    row = rows[0]
    wrong = control_target(row, params.run.seed)
    micro_adapter(student, row, params.phase1b, params.lora, tooled(params, instrument))[0]
    micro_adapter(student, row, params.phase1b, params.lora, tooled(params, instrument), wrong)[0]
    (_, [true_example], _, true_dose, _), (_, [control_example], _, control_dose, _) = trainings
    assert true_example == sft_example(row, "hint") and true_example.target == row.expert_action
    assert control_example == replace(true_example, target=wrong) != true_example
    assert control_dose == true_dose == params.phase1b.over(params.lora)


@pytest.mark.slow
def test_the_control_adapter_raises_its_wrong_target_and_only_the_true_one_raises_a_star(
    student, rows, tmp_path, instrument
):
    params = _params(tmp_path, steps=5)
    row = rows[1]
    prompt = sft_example(row, "demo").prompt
    wrong, expert = control_target(row, params.run.seed), row.expert_action
    before = student.action_probabilities([prompt])[0]
    control = micro_adapter(
        student, row, params.phase1b, params.lora, tooled(params, instrument), wrong
    )[0]
    true = micro_adapter(student, row, params.phase1b, params.lora, tooled(params, instrument))[0]
    controlled = control.student.action_probabilities([prompt])[0]
    taught = true.student.action_probabilities([prompt])[0]
    assert controlled[ACTIONS.index(wrong)] > 10 * before[ACTIONS.index(wrong)]
    assert controlled[ACTIONS.index(wrong)] > before[ACTIONS.index(wrong)] + 0.01
    assert taught[ACTIONS.index(expert)] > controlled[ACTIONS.index(expert)] + 0.01
    assert control.losses[-1] < control.losses[0]


def validate(params: Parameters, rows, student: Student, out: Path, instrument: Instrument):
    """Phase 1B into `out`, its verdicts into the verdicts file beside it, as the notebook runs
    it."""
    layout, verdicts = Phase1BLayout(out), RunLayout(out.parent).verdicts
    return validate_cpt(
        rows=rows,
        phase1b=params.phase1b,
        lora=params.lora,
        instrument=tooled(params, instrument),
        seed=params.run.seed,
        workers=LocalWorkers(student),
        out=layout,
        progress=False,
        verdicts=verdicts,
    )


@pytest.mark.slow
def test_phase1b_replays_the_same_streams_writes_its_files_and_resumes(
    student, rows, tmp_path, instrument
):
    """With an adapter that barely moves the weights, every rollout after training must be the
    one before it (delta 0), whatever else shares its batch. Near-uniform draws (temperature
    50) from the last decisions of bot runs make other streams give other rates."""
    still = {"learning_rate": 1e-12, "steps": 1}
    params = _params(tmp_path, temperature=50.0, n_validation_rollouts=8, **still)
    out = tmp_path / "phase1b"
    report = validate(params, rows, student, out, instrument)
    assert report.newly_trained == len(report.results) == 4
    assert sorted(r.quadrant for r in report.results) == sorted(QUADRANTS)
    assert any(result.before > 0 for result in report.results), "no rollout succeeds: no test"
    assert [result.delta for result in report.results] == [0.0] * 4
    assert [result.control_after for result in report.results] == [
        result.before for result in report.results
    ], "the control plays the same streams"
    assert [result.delta_vs_control for result in report.results] == [0.0] * 4
    for result in report.results:
        (row,) = [r for r in rows if r.id == result.id]
        alone = validation_outcomes(student, [row], params.phase1b, params.run.seed)[row.id]
        assert alone.mean() == pytest.approx(result.before)
        assert result.halves == [0.0, 0.0]  # the same streams, halves too
        assert result.format == "demo"
        assert len(result.losses) == 1 and result.n_rollouts == 8
        assert (result.U, result.L_local) == (row.U, row.L)
        assert result.logp_before == expert_logprobs(student, [row], 0)[row.id] < 0
        assert abs(result.delta_logp) < 1e-4  # the adapter barely moved the weights
        assert abs(result.control_delta_logp) < 1e-4
        assert result.control_target == control_target(row, params.run.seed)
        assert result.control_target != row.expert_action
    saved = read_json(out / "micro_training_results.json")
    assert saved == [result.model_dump(mode="json") for result in report.results]
    assert CPTGate.load(out / "cpt_correlation.json") == report.correlation
    assert report.correlation.n == 4
    assert Verdicts.load(tmp_path / "verdicts.json").verdicts == report.correlation.verdicts

    log = read_jsonl(out / "micro_training.jsonl")
    write_jsonl(
        out / "micro_training.jsonl", log[:-1]
    )  # killed before the last snapshot was written
    resumed = validate(params, rows, student, out, instrument)
    assert resumed.newly_trained == 1
    again = read_json(out / "micro_training_results.json")
    assert [{**r, "seconds": 0} for r in again] == [{**r, "seconds": 0} for r in saved]
    assert validate(params, rows, student, out, instrument).newly_trained == 0
    measured_before = {**log[0], "key": "measured otherwise"}
    for name in ("control_target", "control_after", "delta_vs_control"):
        del measured_before[name]
    write_jsonl(out / "micro_training.jsonl", [measured_before, *log[1:]])
    assert validate(params, rows, student, out, instrument).newly_trained == 1, (
        "a stale result is redone"
    )
    changed = _params(tmp_path, steps=3)
    key = result_key(
        rows[0],
        params.phase1b,
        params.lora,
        tooled(params, instrument),
        params.run.seed,
        student.params,
    )
    changed_key = result_key(
        rows[0],
        changed.phase1b,
        changed.lora,
        tooled(changed, instrument),
        changed.run.seed,
        student.params,
    )
    assert changed_key != key


@pytest.mark.slow
def test_micro_training_raises_log_pi_of_the_expert_action_and_reports_comparators(
    student, rows, tmp_path, instrument
):
    params = _params(tmp_path, steps=3)
    out = tmp_path / "phase1b"
    report = validate(params, rows, student, out, instrument)
    assert all(result.delta_logp > 0 for result in report.results)
    for result in report.results:
        assert result.delta_logp == pytest.approx(result.logp_after - result.logp_before, abs=2e-6)
        assert result.delta_vs_control == pytest.approx(result.after - result.control_after)
        assert result.control_delta == pytest.approx(result.control_after - result.before)
        change = result.control_logp_after - result.logp_before
        assert result.control_delta_logp == pytest.approx(change, abs=2e-6)
        assert result.control_delta_logp < result.delta_logp - 1, "a* was taught, not trained"
    correlation = report.correlation
    assert correlation.mean_delta_logp.n == 4 and correlation.mean_delta_logp.low > 0
    assert correlation.mean_control_delta_logp.high < correlation.mean_delta_logp.low
    assert set(correlation.comparators) == {"L_local", "U", "delta_logp"}
    assert all(estimate.n == 4 for estimate in correlation.comparators.values())
    assert correlation.comparators["U"].value is None  # every row has U 0.5: no rho, no error
    assert [v.criterion for v in correlation.verdicts] == ["rho", "q1_minus_q2"]
    saved = read_json(out / "cpt_correlation.json")
    assert saved["comparators"]["delta_logp"]["n"] == 4 and saved["mean_delta_logp"]["low"] > 0
    frame = pd.DataFrame([result.model_dump() for result in report.results])
    utility = spearman(frame["ELP_net"], frame["delta_vs_control"], 200, params.run.seed)
    assert correlation.spearman == utility
    raw = spearman(frame["ELP_net"], frame["delta"], 200, params.run.seed)
    assert correlation.raw_spearman == raw


# --- the gate on synthetic panels ----------------------------------------------------------------


def _panel(
    slope: float, q1_on_top: bool = True, n: int = 40, raw_slope: float = 0.0
) -> pd.DataFrame:
    """ELP_net uniform in [-0.5, 1], the utility delta_vs_control = slope * ELP_net + noise,
    and the raw delta = raw_slope * ELP_net + noise of its own; quadrants by ELP_net
    quartile, Q1 on the highest (or, when not `q1_on_top`, on the lowest)."""
    rng = np.random.default_rng(7)
    elp = rng.uniform(-0.5, 1.0, n)
    utility = slope * elp + rng.normal(0, 0.15, n)
    raw = raw_slope * elp + rng.normal(0, 0.15, n)
    order = ["Q2_highU_lowL", "Q3_lowU_lowL", "Q4_lowU_highL", "Q1_highU_highL"]
    if not q1_on_top:
        order = order[::-1]
    quartile = np.searchsorted(np.quantile(elp, [0.25, 0.5, 0.75]), elp)
    quadrants = [order[q] for q in quartile]
    return pd.DataFrame(
        {"quadrant": quadrants, "ELP_net": elp, "delta_vs_control": utility, "delta": raw}
    )


def test_a_strong_monotone_relation_holds_on_its_intervals():
    verdict = gate(_panel(0.6), seed=0, resamples=500)
    rho = verdict.spearman
    assert verdict.outcome == "holds" and verdict.n == rho.n == 40
    assert [(v.phase, v.criterion, v.outcome) for v in verdict.verdicts] == [
        ("phase1b", "rho", "holds"),
        ("phase1b", "q1_minus_q2", "holds"),
    ]
    assert 0.3 <= rho.low <= rho.value <= rho.high
    q1, q2 = (
        verdict.per_quadrant[q].mean_delta_vs_control for q in ("Q1_highU_highL", "Q2_highU_lowL")
    )
    assert verdict.q1_minus_q2.value == pytest.approx(q1.value - q2.value, abs=1e-5)
    assert verdict.q1_minus_q2.low > 0 and verdict.q1_minus_q2.n == q1.n + q2.n
    assert sum(panel.mean_delta_vs_control.n for panel in verdict.per_quadrant.values()) == 40
    assert all(panel.mean_delta_vs_control.known for panel in verdict.per_quadrant.values())
    assert gate(_panel(0.6), seed=0, resamples=500) == verdict, "seeded bootstrap"


def test_the_gate_judges_the_control_corrected_delta_and_reports_the_raw_one_beside_it():
    """A planted panel where the utility tracks ELP_net and the raw delta falls with it: the
    gate holds on the utility, and the raw figures, reported, say the opposite."""
    panel = _panel(0.6, raw_slope=-0.6)
    verdict = gate(panel, seed=0, resamples=500)
    assert verdict.outcome == "holds"
    assert verdict.spearman.low > 0.3 and verdict.raw_spearman.high < 0
    assert verdict.spearman == spearman(panel["ELP_net"], panel["delta_vs_control"], 500, 0)
    assert verdict.raw_spearman == spearman(panel["ELP_net"], panel["delta"], 500, 0)
    assert verdict.q1_minus_q2.low > 0 > verdict.raw_q1_minus_q2.high
    assert "delta_vs_control" in verdict.verdicts[0].claim
    for quadrant, figures in verdict.per_quadrant.items():
        within = panel[panel["quadrant"] == quadrant]
        corrected, raw = figures.mean_delta_vs_control, figures.mean_delta
        assert corrected.value == pytest.approx(within["delta_vs_control"].mean(), abs=1e-5)
        assert raw.value == pytest.approx(within["delta"].mean(), abs=1e-5)
        assert corrected.n == raw.n == len(within) and corrected.low < corrected.high
    flipped = gate(
        panel.rename(columns={"delta": "delta_vs_control", "delta_vs_control": "delta"}), 0, 500
    )
    assert flipped.outcome == "fails" and flipped.raw_spearman == verdict.spearman

    table = panel_frame(verdict)
    means = table[table["figure"] == "mean"].set_index(["panel", "utility"])
    assert len(means) == 2 * (len(QUADRANTS) + 1)
    assert means.loc[("Q1 - Q2", "delta"), "value"] == verdict.raw_q1_minus_q2.value
    q1 = means.loc[("Q1_highU_highL", "delta_vs_control")]
    assert (q1["value"], q1["n"]) == (
        verdict.per_quadrant["Q1_highU_highL"].mean_delta_vs_control.value,
        verdict.per_quadrant["Q1_highU_highL"].mean_delta_vs_control.n,
    )
    rhos = table[(table["panel"] == "all") & (table["figure"] == "rho")]
    assert list(rhos["value"]) == [verdict.spearman.value, verdict.raw_spearman.value]
    dots, intervals, ticks = delta_chart(panel, verdict).layer
    assert len(dots.data) == 2 * len(panel) and set(dots.data["utility"]) == set(
        means.index.levels[1]
    )
    assert intervals.data is ticks.data and len(ticks.data) == 2 * len(QUADRANTS)
    assert set(ticks.data["quadrant"]) == set(QUADRANTS), "the means sit on their quadrants"


def test_comparators_say_which_label_tracks_delta_and_are_never_judged():
    panel = _panel(0.0)  # ELP_net does not track delta
    rng = np.random.default_rng(3)
    n = len(panel)
    panel = panel.assign(
        L_local=panel["delta_vs_control"] + rng.normal(0, 0.05, n),
        U=rng.uniform(0, 1, n),
        delta_logp=2 * panel["delta_vs_control"] + rng.normal(0, 0.3, n),
        control_delta_logp=rng.normal(-0.5, 0.3, n),
    )
    panel.loc[:4, "L_local"] = np.nan  # five rows without leverage are left out of its rho
    verdict = gate(panel, seed=0, resamples=500)
    assert verdict.spearman.low < 0.3 and verdict.outcome != "holds"
    comparators = verdict.comparators
    assert comparators["L_local"].low > 0.5 and comparators["L_local"].n == n - 5
    assert comparators["U"].low < 0 < comparators["U"].high and comparators["U"].n == n
    assert comparators["delta_logp"].low > 0
    mean = verdict.mean_delta_logp
    assert mean.value == pytest.approx(panel["delta_logp"].mean(), abs=1e-5)
    assert mean.low < mean.value < mean.high and mean.n == n
    control = verdict.mean_control_delta_logp
    assert control.value == pytest.approx(panel["control_delta_logp"].mean(), abs=1e-5)
    assert control.high < 0 and control.n == n
    assert [v.criterion for v in verdict.verdicts] == ["rho", "q1_minus_q2"]

    table = comparator_frame(verdict)
    labels = ["ELP_net", "L_local", "U", "delta_logp", "delta_logp", "control_delta_logp"]
    assert list(table["label"]) == labels
    assert list(table["role"]) == ["gate"] + ["reported"] * 5
    assert table.iloc[0]["value"] == verdict.spearman.value
    assert len(comparator_chart(verdict).to_dict()["layer"]) == 3
    bare = gate(_panel(0.0), seed=0, resamples=200)  # a panel without comparator columns
    assert bare.comparators == {} and bare.mean_delta_logp is None
    assert bare.mean_control_delta_logp is None
    assert list(comparator_frame(bare)["label"]) == ["ELP_net"]


def test_an_anti_correlated_relation_fails_each_criterion():
    verdict = gate(_panel(-0.6), seed=0, resamples=500)
    assert verdict.outcome == "fails"
    assert verdict.spearman.high < 0 and verdict.q1_minus_q2.high < 0
    assert [v.outcome for v in verdict.verdicts] == ["fails", "fails"]


def test_one_failing_criterion_fails_the_gate_and_a_small_panel_is_inconclusive():
    swapped = gate(_panel(0.6, q1_on_top=False), seed=0, resamples=500)
    assert [v.outcome for v in swapped.verdicts] == ["holds", "fails"]
    assert swapped.outcome == "fails"
    # 12 snapshots with a weak relation: the rho interval straddles 0.3, no criterion fails.
    small = gate(_panel(0.15, n=12), seed=0, resamples=500)
    assert small.spearman.low < 0.3 < small.spearman.high
    assert "fails" not in {v.outcome for v in small.verdicts}
    assert small.outcome == "inconclusive"


def test_an_undefined_rho_is_inconclusive_not_a_failure():
    verdict = gate(_panel(0.6).assign(delta_vs_control=0.0), seed=0, resamples=500)
    assert verdict.spearman.value is None and verdict.verdicts[0].note == "not measured"
    assert verdict.verdicts[0].outcome == "inconclusive"
    assert verdict.q1_minus_q2.value == 0.0 and verdict.verdicts[1].outcome == "inconclusive"
    assert "zero-width" in verdict.verdicts[1].note  # no spread seen is no information


# --- the runner acts on the gate's outcome -------------------------------------------------------


@pytest.fixture
def gated(tmp_path, monkeypatch):
    """A run of phase 1B on the stand-in notebook, which publishes the gate the test wrote to
    `gate` as `cpt_correlation.json`; returns (command, gate file, run folder)."""
    params = tmp_path / "gated.yaml"
    params.write_text(
        yaml.safe_dump({"run": {"output_root": "runs"}, "student": {"model": "tiny"}})
    )
    run_dir = tmp_path / "runs" / "gated"
    write_json(run_dir / "phase0" / "warmup.json", {})
    write_json(run_dir / "phase1" / "labeled_snapshots.json", [])
    write_json(run_dir / "phase1a" / "dose.json", {})
    command = ["run", str(params), "--notebooks-dir", str(FIXTURES), "--phases", "1b"]
    published = tmp_path / "gate.json"
    monkeypatch.setenv("TEACHABLE_GATE_VERDICT", str(published))
    return command, published, run_dir


def publish(path: Path, slope: float, n: int = 40, q1_on_top: bool = True) -> None:
    correlation = gate(_panel(slope, q1_on_top, n), seed=0, resamples=200)
    write_json(path, correlation.model_dump(mode="json"))


def test_a_gate_that_holds_goes_on_quietly(gated, capsys):
    command, published, run_dir = gated
    publish(published, 0.6)
    assert main(command) == 0
    assert read_json(run_dir / "phase1b" / "cpt_correlation.json")["outcome"] == "holds"
    assert "GATE" not in capsys.readouterr().err
    record = read_json(run_dir / "provenance.json")
    assert record["status"] == "finished" and "gate" not in record["phases"][0]["reason"]


@pytest.mark.slow
def test_an_inconclusive_gate_goes_on_loudly(gated, capsys):
    command, published, run_dir = gated
    publish(published, 0.15, n=12)
    assert main(command) == 0
    err = capsys.readouterr().err
    assert "GATE INCONCLUSIVE: phase 1b" in err and "THE RUN GOES ON" in err
    assert "[inconclusive] phase1b rho:" in err
    record = read_json(run_dir / "provenance.json")
    assert record["status"] == "finished"
    assert record["phases"][0]["reason"].endswith("gate inconclusive, continued")


@pytest.mark.slow
def test_a_failing_gate_stops_the_run_unless_told_to_go_on(gated, capsys):
    command, published, run_dir = gated
    publish(published, -0.6)
    assert main(command) == 1
    err = capsys.readouterr().err
    assert "GATE FAILS: phase 1b" in err and "the pipeline stops here" in err
    assert "[fails] phase1b rho:" in err and "[fails] phase1b q1_minus_q2:" in err
    record = read_json(run_dir / "provenance.json")
    assert record["status"] == "failed" and record["phases"][0]["status"] == "gate failed"

    assert main(command) == 1, "an up-to-date phase whose gate failed still stops the run"
    assert "up to date" in capsys.readouterr().out

    going_on = [*command, "--set", "phase1b.continue_on_failed_gate=true"]
    assert main(going_on) == 0
    err = capsys.readouterr().err
    assert "GATE FAILS: phase 1b" in err and "CONTINUING ANYWAY" in err
    record = read_json(run_dir / "provenance.json")
    assert record["status"] == "finished"
    assert record["parameters"]["phase1b"]["continue_on_failed_gate"] is True
    assert record["phases"][0]["reason"].endswith("gate failed, continued")


def test_command_line_settings_are_validated_like_the_file(tmp_path, capsys):
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump({"run": {"output_root": "runs"}}))
    base = ["run", str(params), "--notebooks-dir", str(FIXTURES), "--phases", "1b"]
    assert main([*base, "--set", "phase2.batch_sise=8"]) == 2
    assert "phase2.batch_sise: unknown key" in capsys.readouterr().err
    assert main([*base, "--set", "phase2.batch_size=0"]) == 2
    assert "phase2.batch_size" in capsys.readouterr().err
    assert main([*base, "--set", "lora.steps=3"]) == 2
    assert "only a phase's own section" in capsys.readouterr().err
    assert main([*base, "--set", "phase2.batch_size"]) == 2
    assert "SECTION.KEY=VALUE" in capsys.readouterr().err
    assert main([*base, "--batch-size", "0"]) == 2
    assert "phase2.batch_size" in capsys.readouterr().err
    assert main([*base, "--gradient-accumulation-steps", "-1"]) == 2
    assert "phase2.gradient_accumulation_steps" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_the_gate_reads_rho_against_the_ceiling_of_both_reliabilities():
    """Utility halves that agree with r = 0.5 over the panel (reliability 2/3) and an ELP_net
    test-retest r of 0.6: the ceiling is sqrt(0.6 x 2/3) ~ 0.63 and the disattenuated rho is rho
    over it, labeled so; without ELP_net's reliability no ceiling is drawn."""
    panel = _panel(0.6)
    rng = np.random.default_rng(2)
    common = rng.normal(size=len(panel))
    panel = panel.assign(
        first_half=common + rng.normal(size=len(panel)),
        second_half=common + rng.normal(size=len(panel)),
    )
    retest = Estimate(value=0.6, low=0.3, high=0.8, n=12)
    verdict = gate(panel, seed=0, resamples=200, elp_reliability=retest)
    utility = verdict.reliability["delta_vs_control"]
    assert utility == split_half(panel["first_half"], panel["second_half"])
    assert 0.4 < utility.value < 0.9
    assert verdict.ceiling == pytest.approx(np.sqrt(0.6 * utility.value), abs=1e-6)
    assert verdict.disattenuated.value == pytest.approx(
        min(1.0, verdict.spearman.value / verdict.ceiling), abs=1e-6
    )
    assert "disattenuated" in verdict.disattenuated.method
    table = noise_frame(verdict)
    assert list(table["figure"]) == [
        "reliability of ELP_net",
        "reliability of delta_vs_control",
        "ceiling on rho",
        "rho",
        "rho disattenuated",
    ]
    alone = gate(panel, seed=0, resamples=200)
    assert alone.ceiling is None and alone.disattenuated is None
    assert alone.reliability["delta_vs_control"] == utility
