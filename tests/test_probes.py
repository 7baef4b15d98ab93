"""Drift and specificity: the figures equal a per-state computation with the student's scoring,
specificity tells a state-specific signal from a push of one action everywhere, and its
interval covers on simulated crossed designs, at one training seed and over several."""

import numpy as np
import pytest
from scipy import stats

from teachable.measure.specificity import PolicyChanges, drift_and_specificity, welch_t
from teachable.models.lora import SFTExample, train_lora
from teachable.models.probes import policy_changes, probe_adapter
from teachable.models.student import Prompt
from teachable.parameters import LoraParameters
from teachable.vocabulary import ACTIONS

COLORS = ("red", "green", "blue", "purple", "yellow", "grey")
OBJECTS = ("ball", "box", "key")
LORA = LoraParameters(r=8, alpha=16, learning_rate=1e-2, steps=20, batch_size=6, seed=3)


def prompts(count: int, seed: int) -> list[Prompt]:
    """`count` random go-to states, each seeing one object somewhere ahead and to the left."""
    rng = np.random.default_rng(seed)
    made = []
    for _ in range(count):
        wanted, seen = rng.choice(COLORS), rng.choice(COLORS)
        goal, thing = rng.choice(OBJECTS), rng.choice(OBJECTS)
        left, ahead = rng.integers(1, 5, 2)
        made.append(
            Prompt(
                f"go to the {wanted} {goal}",
                f"You see a {seen} {thing} {left} steps left and {ahead} steps forward.",
            )
        )
    return made


PROBE_PROMPTS = prompts(16, seed=1)
TRAINED_PROMPTS = prompts(6, seed=2)
# a state-specific signal: each trained state its own target, every action once
SPECIFIC = [SFTExample(p, action) for p, action in zip(TRAINED_PROMPTS, ACTIONS, strict=True)]
SPECIFIC_PROBES = [SFTExample(p, ACTIONS[i % len(ACTIONS)]) for i, p in enumerate(PROBE_PROMPTS)]
# a push of one action everywhere, and probes whose expert action is that same action
PUSH = [SFTExample(p, "toggle") for p in TRAINED_PROMPTS]
PUSH_PROBES = [SFTExample(p, "toggle") for p in PROBE_PROMPTS]


@pytest.fixture(scope="module")
def specific(student):
    return train_lora(student, SPECIFIC, LORA).student


@pytest.fixture(scope="module")
def pushed(student):
    return train_lora(student, PUSH, LORA).student


def test_the_figures_are_the_per_state_changes_of_the_students_policies(student, specific):
    examples = [*SPECIFIC, SPECIFIC[0]]  # a repeated state counts once per example
    changes = policy_changes(student, specific, SPECIFIC_PROBES, examples)
    warmed = np.log([student.action_probabilities([s.prompt])[0] for s in SPECIFIC_PROBES])
    trained = np.log([specific.action_probabilities([s.prompt])[0] for s in SPECIFIC_PROBES])
    experts = [ACTIONS.index(s.target) for s in SPECIFIC_PROBES]
    targets = [ACTIONS.index(s.target) for s in examples]
    drift = [np.exp(w) @ (w - t) for w, t in zip(warmed, trained, strict=True)]
    np.testing.assert_allclose(changes.drift, drift, atol=1e-5)
    change = trained - warmed
    np.testing.assert_allclose(changes.expert_change, change[range(16), experts], atol=1e-5)
    np.testing.assert_allclose(changes.probe_target_change, change[:, targets], atol=1e-5)
    at_targets = [
        np.log(specific.action_probabilities([s.prompt])[0][ACTIONS.index(s.target)])
        - np.log(student.action_probabilities([s.prompt])[0][ACTIONS.index(s.target)])
        for s in examples
    ]
    np.testing.assert_allclose(changes.target_change, at_targets, atol=1e-5)

    probe = probe_adapter(student, specific, SPECIFIC_PROBES, examples)
    assert (probe.n_probes, probe.n_trained) == (16, 7)
    assert probe.drift.value == pytest.approx(np.mean(drift), abs=1e-5)
    assert probe.drift.n == probe.expert_change.n == 16 and probe.target_change.n == 7
    assert probe.expert_change.value == pytest.approx(change[range(16), experts].mean(), abs=1e-5)
    assert probe.target_change.value == pytest.approx(np.mean(at_targets), abs=1e-5)
    push_everywhere = np.mean([change[:, target].mean() for target in targets])
    expected = np.mean(at_targets) - push_everywhere
    assert probe.specificity.value == pytest.approx(expected, abs=1e-5)
    assert (
        probe.specificity.n == 23
        and "7 trained states + 16 probe states" in probe.specificity.method
    )


def test_specificity_is_positive_for_a_state_specific_signal(student, specific):
    probe = probe_adapter(student, specific, SPECIFIC_PROBES, SPECIFIC)
    assert probe.target_change.value > 2.0
    assert probe.specificity.value > 1.0 and probe.specificity.low > 0


def test_specificity_is_near_zero_for_a_push_of_one_action_everywhere(student, pushed):
    probe = probe_adapter(student, pushed, PUSH_PROBES, PUSH)
    assert probe.target_change.value > 2.0 and probe.drift.value > 1.0
    assert probe.expert_change.value > 2.0  # the probes' a* is the pushed action
    assert probe.specificity.low < 0 < probe.specificity.high
    assert abs(probe.specificity.value) < 0.1 * probe.target_change.value


def crossed_changes(
    n_probes: int, n_trained: int, rng: np.random.Generator
) -> tuple[PolicyChanges, float]:
    """Simulated changes of specificity 1 (over trained sets): trained-state effects, target
    effects at the probes that follow them, probe-state effects and noise; and the drawn
    trained set's own specificity."""
    state = rng.normal(0, 1, n_trained)
    target = 0.8 * state + rng.normal(0, 0.5, n_trained)
    probe = rng.normal(0, 0.5, (n_probes, 1)) + target + rng.normal(0, 0.3, (n_probes, n_trained))
    drift = rng.exponential(1.0, n_probes)
    changes = PolicyChanges(drift, rng.normal(0, 1, n_probes), 1 + state, probe)
    return changes, float(np.mean(1 + state - target))


@pytest.mark.parametrize(
    "n_probes, n_trained, figures",
    [
        (52, 10, ("specificity", "target_change", "drift")),
        (20, 4, ("specificity", "target_change")),  # skewed drift needs more probes than 20
    ],
)
def test_the_intervals_cover_on_simulated_crossed_designs(n_probes, n_trained, figures):
    rng = np.random.default_rng(0)
    covered = dict.fromkeys(figures, 0)
    for _ in range(400):
        probe = drift_and_specificity([[crossed_changes(n_probes, n_trained, rng)[0]]])
        for name in covered:
            estimate = getattr(probe, name)
            covered[name] += estimate.low <= 1.0 <= estimate.high
    for name, hits in covered.items():
        assert 0.91 <= hits / 400 <= 0.98, (name, hits / 400)


def test_one_trained_state_is_fixed_and_the_probes_carry_the_interval():
    """With one trained state the interval is about that state: it covers the state's own
    specificity, and its change alone has no interval."""
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(400):
        changes, own = crossed_changes(52, 1, rng)
        probe = drift_and_specificity([[changes]])
        covered += probe.specificity.low <= own <= probe.specificity.high
    assert 0.92 <= covered / 400 <= 0.98
    assert probe.target_change.low is None and probe.target_change.value is not None


def test_welch_t_adds_the_parts_and_keeps_a_single_value_fixed():
    first, second = np.array([1.0, 2.0, 4.0]), np.array([0.0, 1.0, 1.0, 2.0])
    both = welch_t(first.mean() - second.mean(), {"a": first, "b": second}, 7)
    welch = stats.ttest_ind(first, second, equal_var=False).confidence_interval(0.95)
    assert (both.low, both.high, both.n) == pytest.approx((welch.low, welch.high, 7), abs=1e-6)
    alone = welch_t(first.mean(), {"a": first}, 3)
    student_t = stats.ttest_1samp(first, 0.0).confidence_interval(0.95)
    assert (alone.low, alone.high) == pytest.approx((student_t.low, student_t.high), abs=1e-6)
    assert both.method == "Welch t interval over 3 a + 4 b"
    assert welch_t(2.0, {"a": np.array([2.0])}, 1).low is None
    fixed = welch_t(first.mean() - 1.0, {"a": first, "b": np.array([1.0])}, 4)
    assert (fixed.low, fixed.high) == pytest.approx((alone.low - 1.0, alone.high - 1.0))
    flat = welch_t(1.0, {"a": np.ones(5)}, 5)
    assert flat.low == flat.high == 1.0
    with pytest.raises(ValueError, match="at least one"):
        drift_and_specificity(
            [[PolicyChanges(np.zeros(0), np.zeros(0), np.ones(2), np.zeros((0, 2)))]]
        )


def seeded_changes(
    n_seeds: int, n_probes: int, n_trained: int, rng: np.random.Generator
) -> list[list[PolicyChanges]]:
    """Simulated cell trainings of the same states at `n_seeds` seeds, of specificity and drift
    1 over states and seeds: each seed shifts every trained state's change (and the drift at
    every probe) by its own luck, as a cell's seed does."""
    state = rng.normal(0, 1, n_trained)
    target = 0.8 * state + rng.normal(0, 0.5, n_trained)
    probe = rng.normal(0, 0.5, (n_probes, 1))
    drift = rng.normal(1, 0.3, n_probes)
    by_seed = []
    for _ in range(n_seeds):
        luck = rng.normal(0, 0.4)
        at_probes = probe + target + rng.normal(0, 0.3, (n_probes, n_trained))
        trained = 1 + state + luck + rng.normal(0, 0.3, n_trained)
        moved = drift + luck + rng.normal(0, 0.2, n_probes)
        by_seed.append([PolicyChanges(moved, rng.normal(0, 1, n_probes), trained, at_probes)])
    return by_seed


@pytest.mark.parametrize("n_probes, n_trained", [(50, 10), (50, 4)])
def test_over_seeds_the_intervals_cross_seeds_with_states_and_cover(n_probes, n_trained):
    """Three seeds training the same states: the crossed intervals cover 1, while pooling the
    seeds' trainings as if their states were others misses the seeds' shared luck."""
    rng = np.random.default_rng(2)
    crossed, pooled = (
        dict.fromkeys(("specificity", "drift"), 0),
        dict.fromkeys(("specificity", "drift"), 0),
    )
    for _ in range(400):
        by_seed = seeded_changes(3, n_probes, n_trained, rng)
        probe = drift_and_specificity(by_seed)
        flat = drift_and_specificity([[t for seed in by_seed for t in seed]])
        for name in crossed:
            crossed[name] += getattr(probe, name).low <= 1.0 <= getattr(probe, name).high
            pooled[name] += getattr(flat, name).low <= 1.0 <= getattr(flat, name).high
    for name in crossed:
        assert 0.92 <= crossed[name] / 400 <= 0.995, (name, crossed[name] / 400)
        assert pooled[name] / 400 < 0.85, (name, pooled[name] / 400)
    assert probe.drift.design == "crossed" and probe.drift.parts == {
        "training seeds": 3,
        "probe states": n_probes,
    }
    assert probe.specificity.method == (
        f"Welch t interval over 3 training seeds x {n_trained} trained states + "
        f"{n_probes} probe states"
    )
    assert (probe.n_trained, probe.target_change.n) == (n_trained, 3 * n_trained)
    levels = [c.level for c in probe.drift.components]
    assert levels == ["training seeds", "probe states", "training seeds x probe states"]


def test_every_seed_must_train_the_same_states():
    rng = np.random.default_rng(3)
    first, second = seeded_changes(1, 5, 3, rng)[0], seeded_changes(1, 5, 2, rng)[0]
    with pytest.raises(ValueError, match="same states"):
        drift_and_specificity([first, second])
