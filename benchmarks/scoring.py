"""Action scoring speed on the embedded default: naive versus batched with cached prefixes.

Builds 64 BabyAI-Text states (a few levels, seeded random action prefixes, each restored from
its env state), scores the six actions of every state both ways, checks they agree, and prints
states per second for each and their ratio.

    .venv/bin/python benchmarks/scoring.py [--states 64] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from teachable.models.student import Prompt, Student
from teachable.parameters import StudentParameters
from teachable.records.env_state import ACTIONS, EnvState
from teachable.world.text_world import TextWorld, env_id

LEVELS = ("GoToLocal", "PickupLoc", "OpenDoor", "PutNextLocal")


def benchmark_prompts(count: int, seed: int = 0) -> list[Prompt]:
    """`count` prompts from restored states: level, seed and a random prefix of 0-7 actions."""
    rng = np.random.default_rng(seed)
    prompts = []
    for index in range(count):
        world = TextWorld(env_id(LEVELS[index % len(LEVELS)]), seed=index)
        for _ in range(rng.integers(0, 8)):
            if world.done:
                break
            world.step(ACTIONS[rng.integers(0, 3)])
        restored = TextWorld.restore(EnvState.model_validate(world.state.model_dump(mode="json")))
        prompts.append(Prompt(restored.mission, restored.observation))
    return prompts


def timed(score, prompts: list[Prompt]) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    scores = score(prompts)
    return scores, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--states", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    student = Student.load(StudentParameters(model="default", batch_size=args.batch_size))
    prompts = benchmark_prompts(args.states)
    lengths = [len(student.prompt_ids(prompt)) for prompt in prompts]
    state_lengths = [len(student.state_ids(prompt)) for prompt in prompts]
    print(f"threads: {torch.get_num_threads()}, states: {len(prompts)}, actions: {len(ACTIONS)}")
    print(
        f"prompt tokens: mean {np.mean(lengths):.1f} (min {min(lengths)}, max {max(lengths)}); "
        f"shared prefix {len(student.prefix_ids)}, per-state mean {np.mean(state_lengths):.1f}"
    )

    student.action_logprobs(prompts[:2])  # warm-up, and the shared prefix is encoded here
    # batched runs before and after naive, so both see the same share of a busy machine
    batched, before_seconds = timed(student.action_logprobs, prompts)
    naive, naive_seconds = timed(student.action_logprobs_naive, prompts)
    _, after_seconds = timed(student.action_logprobs, prompts)
    batched_seconds = (before_seconds + after_seconds) / 2
    difference = np.abs(batched - naive).max()
    states = len(prompts)
    print(f"naive:          {naive_seconds:7.2f} s  {states / naive_seconds:6.2f} states/s")
    print(
        f"batched-cached: {batched_seconds:7.2f} s  {states / batched_seconds:6.2f} states/s"
        f"  (runs: {before_seconds:.2f} s before naive, {after_seconds:.2f} s after)"
    )
    print(f"ratio: {naive_seconds / batched_seconds:.1f}x; max |batched - naive| {difference:.1e}")
    print("load average (1, 5, 15 min): " + ", ".join(f"{load:.2f}" for load in os.getloadavg()))


if __name__ == "__main__":
    main()
