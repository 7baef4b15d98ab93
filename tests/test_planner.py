"""The planner: variance components read off a run predict the intervals of runs of other sizes
(checked on synthetic experiments with known components), the sizes it asks for decide, and
`plan` writes a plan from a run folder with the compute of each size."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from teachable.__main__ import main
from teachable.measure.intervals import hierarchical_mean, spearman, wilson
from teachable.measure.planning import SCALES, current_sizes, needed_scale, predicted_half
from teachable.measure.specificity import welch_t
from teachable.measure.verdicts import judge
from teachable.parameters import load_parameters
from teachable.pipeline.planner import LEVERS, Lever, load_defaults, plannable, stated_default
from teachable.records.estimate import VarianceComponent
from teachable.records.plan import Plan
from teachable.records.verdicts import PRIMARY_FAMILY, Verdict, Verdicts

ROOT = Path(__file__).resolve().parents[1]

TRUE = {"seeds": 0.02, "items": 0.05, "seeds x items": 0.03, "episodes": 0.2}


def crossed_run(rng: np.random.Generator, seeds: int, items: int, episodes: int) -> np.ndarray:
    """Paired differences (seeds, items, episodes) with the variance components `TRUE`."""
    return (
        rng.normal(0, np.sqrt(TRUE["seeds"]), (seeds, 1, 1))
        + rng.normal(0, np.sqrt(TRUE["items"]), (1, items, 1))
        + rng.normal(0, np.sqrt(TRUE["seeds x items"]), (seeds, items, 1))
        + rng.normal(0, np.sqrt(TRUE["episodes"]), (seeds, items, episodes))
        + 0.1
    )


def binary_run(rng: np.random.Generator, seeds: int, items: int) -> np.ndarray:
    """Paired binary outcomes, one episode per item: a model whose success varies by seed and
    item against a base at 0.4."""
    p = 0.5 + rng.normal(0, 0.1, (seeds, 1, 1)) + rng.normal(0, 0.15, (1, items, 1))
    model = rng.random((seeds, items, 1)) < np.clip(p, 0, 1)
    return model.astype(float) - (rng.random((seeds, items, 1)) < 0.4)


def half(estimate) -> float:
    return (estimate.high - estimate.low) / 2


def test_crossed_components_are_unbiased_and_give_back_the_interval():
    """Over 1000 simulated runs of 3 seeds x 24 items x 2 episodes, each estimated component's
    mean is within 3 standard errors of the true one; at a run's own sizes the planner gives
    back its interval's half-width."""
    rng = np.random.default_rng(0)
    estimates = [hierarchical_mean(crossed_run(rng, 3, 24, 2)) for _ in range(1000)]
    for index, (level, truth) in enumerate(TRUE.items()):
        values = np.array([e.components[index].variance for e in estimates])
        assert estimates[0].components[index].level == level
        assert abs(values.mean() - truth) < 3 * values.std(ddof=1) / np.sqrt(len(values))
    for estimate in estimates[:20]:
        assert estimate.design == "crossed"
        assert predicted_half(estimate, {}, 0.95) == pytest.approx(half(estimate), rel=1e-4)


@pytest.mark.parametrize("kind", ["continuous", "binary"])
def test_predicted_half_width_at_three_times_the_seeds_and_four_times_the_items(kind):
    """From the components of a 3-seed x 24-item run (the true ones for the continuous
    experiment; the mean over 2000 simulated runs, which are unbiased, for the binary one), the
    predicted half-width at 9 seeds x 96 items is within 15% of the mean half-width of 400
    simulated runs of that size."""
    rng = np.random.default_rng(1)
    if kind == "continuous":
        base = hierarchical_mean(crossed_run(rng, 3, 24, 2))
        known = [
            component.model_copy(update={"variance": TRUE[component.level]})
            for component in base.components
        ]
        observed = [half(hierarchical_mean(crossed_run(rng, 9, 96, 2))) for _ in range(400)]
    else:
        runs = [hierarchical_mean(binary_run(rng, 3, 24)) for _ in range(2000)]
        base = runs[0]
        known = [
            component.model_copy(
                update={"variance": float(np.mean([r.components[i].variance for r in runs]))}
            )
            for i, component in enumerate(base.components)
        ]
        observed = [half(hierarchical_mean(binary_run(rng, 9, 96))) for _ in range(400)]
    planned = base.model_copy(update={"components": known})
    predicted = predicted_half(planned, {"seeds": 9, "items": 96}, 0.95)
    assert predicted == pytest.approx(np.mean(observed), rel=0.15)


def test_welch_rate_and_correlation_intervals_are_predicted_at_five_times_the_units():
    """A mean over 14 probe states, a rate over 40 rows and Spearman's rho over 12 pairs: the
    half-width predicted from one run at 5x the units is within 15% of the mean over 400
    simulated runs at that size."""
    rng = np.random.default_rng(2)

    def probes(n):
        states = rng.normal(0.07, 0.045, n)
        return welch_t(states.mean(), {"probe states": states}, n)

    def accuracy(n):
        return wilson(int((rng.random(n) < 0.4).sum()), n)

    def rho(n):
        x = rng.normal(size=n)
        return spearman(x, 0.6 * x + rng.normal(0, 0.8, n), resamples=10)

    for make, level, n in ((probes, "probe states", 14), (accuracy, "n", 40), (rho, "pairs", 12)):
        base = make(n)
        while base.low is None:
            base = make(n)
        predicted = predicted_half(base, {level: 5 * n}, 0.95)
        observed = np.mean([half(make(5 * n)) for _ in range(400)])
        assert predicted == pytest.approx(observed, rel=0.15), level


def test_the_needed_scale_is_the_first_that_reaches_the_wanted_half_width():
    estimate = hierarchical_mean(crossed_run(np.random.default_rng(3), 3, 24, 1))
    wanted = half(estimate) / 3
    scale = needed_scale(estimate, wanted, 0.95)
    sizes = current_sizes(estimate)
    at = {name: size * scale for name, size in sizes.items()}
    assert predicted_half(estimate, at, 0.95) < wanted
    before = SCALES[SCALES.index(scale) - 1]
    assert predicted_half(estimate, {k: v * before for k, v in sizes.items()}, 0.95) >= wanted
    assert needed_scale(estimate, None, 0.95) is None
    assert needed_scale(estimate, 1e-9, 0.95) is None, "no run up to 1000x reaches it"


def test_every_primary_has_its_levers_and_a_stated_default():
    assert set(LEVERS) == set(PRIMARY_FAMILY)
    defaults = load_defaults()
    assert set(defaults) == set(PRIMARY_FAMILY)
    for key, default in defaults.items():
        assert default.source and plannable(default.verdict.estimate), key
        for level in current_sizes(default.verdict.estimate):
            assert default.levers[LEVERS[key][level].key], (key, level)
    pilot = load_parameters(ROOT / "parameters" / "pilot.yaml")
    seeds = Lever("phase2.seeds").set(pilot, 3)
    assert seeds.phase2.seeds == [0, 1, 2] and Lever("phase2.seeds").value(seeds) == 3
    assert Lever("phase3.n_tasks").set(pilot, 48).phase3.n_tasks == 48
    runs = Lever("phase2.seeds", ("phase2.formats",))  # a run per format and seed
    assert runs.value(pilot) == len(pilot.phase2.formats) == 3
    assert runs.set(pilot, 9).phase2.seeds == [0, 1, 2], "9 runs: 3 seeds of the 3 formats"


def _run_folder(tmp_path: Path, name: str, **changes) -> Path:
    """A copy of the smoke parameters with its run folder under `tmp_path` and `changes`
    (section -> key -> value) applied."""
    data = yaml.safe_load((ROOT / "parameters" / "smoke.yaml").read_text())
    data.setdefault("run", {}).update({"name": name, "output_root": "runs"})
    for section, values in changes.items():
        data.setdefault(section, {}).update(values)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_plan_writes_each_primary_from_the_run_or_the_defaults(tmp_path, capsys):
    """A run that judged two primaries (Phase 5's, on 1 seed x 12 items and on 2 seeds x 12
    items): those are planned from the run, the rest from the stated defaults; planning for
    4 times the held-out tasks narrows the planned interval and costs more CPU time."""
    params = _run_folder(tmp_path, "planned")
    parameters = load_parameters(params)
    rng = np.random.default_rng(4)
    gains = {
        "predictor_beats_entropy": hierarchical_mean(binary_run(rng, 1, 12)[0]),
        "entropy_beats_random": hierarchical_mean(binary_run(rng, 2, 12)),
    }
    verdicts = [judge("phase5", name, "claim", est, ">", 0.0) for name, est in gains.items()]
    parameters.layout.folder.mkdir(parents=True)
    Verdicts(verdicts=verdicts).model_dump(mode="json")
    path = parameters.layout.verdicts
    path.write_text(Verdicts(verdicts=verdicts).model_dump_json())
    more = _run_folder(tmp_path, "more", phase3={"n_tasks": 4 * parameters.phase3.n_tasks})
    assert main(["plan", str(params), "--for", str(more)]) == 0
    printed = capsys.readouterr().out
    plan = Plan.load(parameters.layout.plan)
    assert [(v.phase, v.criterion) for v in plan.verdicts] == list(PRIMARY_FAMILY)
    by_name = {v.criterion: v for v in plan.verdicts}
    for name in gains:
        planned = by_name[name]
        assert planned.basis == "this run"
        assert planned.sizes_planned["items"] == 4 * planned.sizes_today["items"]
        assert planned.half_planned < planned.half_today
        assert name in printed
    assert by_name["rho"].basis.startswith("stated default")
    same = _run_folder(tmp_path, "same")
    assert main(["plan", str(params), "--for", str(same)]) == 0
    cheaper = Plan.load(parameters.layout.plan).compute_planned.cpu_hours
    assert plan.compute_planned.cpu_hours > cheaper > 0
    assert "FLOPs" in plan.cost_model and plan.decision_confidence > 0.99
    assert main(["plan", str(params), "--target", "0.05"]) == 0
    targeted = Plan.load(parameters.layout.plan)
    for verdict in targeted.verdicts:
        if verdict.scale is not None:
            assert verdict.wanted_half == 0.05 and verdict.compute_needed.cpu_hours > 0
    shutil.rmtree(parameters.layout.folder)
    assert main(["plan", str(tmp_path / "missing.yaml")]) == 2


def test_a_component_keeps_six_significant_digits():
    component = VarianceComponent(level="items", variance=1 / 3, over={"items": 3})
    assert component.variance == 0.333333 and component.share({"items": 6}) == 0.333333 / 6


def test_a_stated_default_round_trips_through_its_record():
    """A finished run's verdict made a stated default keeps the verdict and the lever values
    it was measured at, as `plan_defaults.json` holds them."""
    pilot = load_parameters(ROOT / "parameters" / "pilot.yaml")
    x = np.random.default_rng(5).normal(size=30)
    verdict = judge("phase1b", "rho", "rho >= 0.3", spearman(x, x**2, resamples=20), ">=", 0.3)
    entry = stated_default(verdict, pilot, "a test run").as_json()
    assert entry["source"] == "a test run"
    assert entry["levers"]["phase1b.n_per_quadrant"] == pilot.phase1b.n_per_quadrant
    assert entry["levers"]["phase2.seeds x phase2.formats"] == 3
    assert Verdict.model_validate(entry["verdict"]) == verdict
