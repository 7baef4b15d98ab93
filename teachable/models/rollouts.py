"""Rollouts: many BabyAI worlds stepped together, one batched scoring call per step.

Every phase that lets the student act (Phase 0 episodes, Phase 1 label rollouts, Phase 1B
validation, Phase 3 evaluation) goes through `run_episodes`. Each episode owns its random
stream, so an episode's outcome does not depend on which other episodes share its batch.

Sampling is inverse-CDF coupling: every episode draws exactly one uniform per step from its
stream (a forced first action too), and takes the first action whose cumulative probability
exceeds it. Two episodes on one stream that meet the same distribution at a step therefore take
the same action: conditions that share streams differ only by their intervention, and their
trajectories rejoin wherever the intervention did not change the action. Identical prompts are
scored once per call, so rejoined trajectories cost no scoring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from teachable.models.student import Prompt, Student, normalized_entropy, softmax_policy
from teachable.records.env_state import EnvState
from teachable.vocabulary import ACTIONS
from teachable.world.text_world import TextWorld


@dataclass(frozen=True)
class EpisodeSpec:
    """Where an episode starts and how its first step may be altered.

    `patch` is supervision text shown in the prompt at the first step only (the student then
    continues unpatched); `forced_action` replaces the student's first choice (leverage).
    `seed` feeds the episode's own random stream (an int or a tuple of ints); episodes with
    one seed draw the same uniforms.
    """

    start: EnvState
    seed: int | tuple[int, ...] = 0
    patch: str | None = None
    forced_action: str | None = None


@dataclass
class Step:
    observation: str
    distribution: list[float]
    entropy: float
    action: str
    expert_action: str | None = None


@dataclass
class Episode:
    spec: EpisodeSpec
    mission: str
    steps: list[Step] = field(default_factory=list)
    success: bool = False

    @property
    def actions(self) -> list[str]:
        return [step.action for step in self.steps]

    def to_dict(self) -> dict:
        """The `rollouts.json` record of one episode."""
        start = self.spec.start
        return {
            "task": {"env_id": start.env_id, "seed": start.seed},
            "start_actions": list(start.actions),
            "mission": self.mission,
            "actions": self.actions,
            "success": self.success,
            "steps": len(self.steps),
            "trace": [
                {
                    "observation": step.observation,
                    "distribution": dict(zip(ACTIONS, step.distribution, strict=True)),
                    "entropy": step.entropy,
                    "action": step.action,
                    "expert_action": step.expert_action,
                }
                for step in self.steps
            ],
        }


def prompt_for(world: TextWorld, history: int = 0, patch: str | None = None) -> Prompt:
    """The student's prompt at the world's current state."""
    previous = world.state.actions[-history:] if history else ()
    return Prompt(
        mission=world.mission,
        observation=world.observation,
        patch=patch,
        previous_actions=tuple(previous),
    )


def sample_actions(
    logprobs: np.ndarray, temperature: float, uniforms: Sequence[float]
) -> list[int]:
    """One action index per row by inverse CDF: the first action whose cumulative probability
    exceeds the row's uniform, so rows with one distribution and one uniform agree; at
    temperature 0 the policy is one-hot and every uniform gives the argmax."""
    policy = softmax_policy(logprobs, temperature)
    cumulative = np.cumsum(policy, axis=1)
    cumulative /= cumulative[:, -1:]
    chosen = (cumulative <= np.asarray(uniforms)[:, None]).sum(axis=1)
    return [int(i) for i in np.minimum(chosen, policy.shape[1] - 1)]


def scores_of(
    student: Student, prompts: Sequence[Prompt], memo: dict[Prompt, np.ndarray] | None
) -> np.ndarray:
    """Action log-probabilities per prompt. With a `memo`, each distinct prompt is scored once
    per memo: episodes on shared streams often meet the same prompt (rollout i of two conditions
    whose first actions agree stays on one trajectory); without one, every prompt is scored in
    the batch as given."""
    if memo is None:
        return student.action_logprobs(list(prompts))
    new = [prompt for prompt in dict.fromkeys(prompts) if prompt not in memo]
    if new:
        memo.update(zip(new, student.action_logprobs(new), strict=True))
    return np.array([memo[prompt] for prompt in prompts])


def run_episodes(
    student: Student,
    specs: Sequence[EpisodeSpec],
    max_steps: int,
    temperature: float = 1.0,
    history: int = 0,
    record_expert: bool = False,
    progress: bool = False,
    share_scores: bool = True,
) -> list[Episode]:
    """Run every episode for at most `max_steps` student steps, all worlds stepped together.

    `share_scores` scores each distinct prompt once for the whole call; `False` scores every
    episode's prompt itself (the reference: equal up to the scorer's batch effects, ~1e-6)."""
    worlds = [TextWorld.restore(spec.start) for spec in specs]
    rngs = [np.random.default_rng(spec.seed) for spec in specs]
    episodes = [Episode(spec, world.mission) for spec, world in zip(specs, worlds, strict=True)]
    memo: dict[Prompt, np.ndarray] | None = {} if share_scores else None
    for t in tqdm(range(max_steps), desc="rollouts", leave=False, disable=not progress):
        active = [i for i, world in enumerate(worlds) if not world.done]
        if not active:
            break
        prompts = [
            prompt_for(worlds[i], history, specs[i].patch if t == 0 else None) for i in active
        ]
        logprobs = scores_of(student, prompts, memo)
        distributions = softmax_policy(logprobs)
        entropies = normalized_entropy(distributions)
        uniforms = np.array([rngs[i].random() for i in active])
        choices = sample_actions(logprobs, temperature, uniforms)
        for row, i in enumerate(active):
            world, spec = worlds[i], specs[i]
            action = ACTIONS[choices[row]]
            if t == 0 and spec.forced_action is not None:
                action = spec.forced_action
            expert = world.expert_action() if record_expert else None
            episodes[i].steps.append(
                Step(
                    observation=prompts[row].observation,
                    distribution=[round(float(p), 6) for p in distributions[row]],
                    entropy=round(float(entropies[row]), 6),
                    action=action,
                    expert_action=expert,
                )
            )
            world.step(action)
    for episode, world in zip(episodes, worlds, strict=True):
        episode.success = bool(world.success)
    return episodes


def success_rate(episodes: Sequence[Episode]) -> float:
    """Fraction of episodes that reached the level's goal."""
    return float(np.mean([episode.success for episode in episodes])) if episodes else 0.0
