"""Action scoring speed: naive versus batched with cached prefixes, float32 versus bfloat16.

Builds 64 BabyAI-Text states (a few levels, seeded random action prefixes, each restored from
its env state) and scores the six actions of every state, on the embedded default student
unless `--model` names another (a hub id or a checkpoint folder, e.g. a warmed student).

- `--compare cache` (default): naively and with the batched cached path, float32; checks they
  agree and prints states per second for each and their ratio.
- `--compare dtype`: the batched path with float32 weights, with bfloat16 weights and a float32
  head (projection and `log_softmax` in float32), and with bfloat16 weights and head; prints
  states per second of each, its speed-up over float32, and how far its action probabilities
  move from float32's on the same states (largest |delta p|, argmax flips).

    .venv/bin/python benchmarks/scoring.py [--states 64] [--batch-size 32] [--compare dtype]
        [--device cpu] [--model default]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from teachable.models.student import Prompt, Student, softmax_policy
from teachable.parameters import StudentParameters
from teachable.records.env_state import EnvState
from teachable.vocabulary import ACTIONS
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


def compare_cache(prompts: list[Prompt], params: StudentParameters) -> None:
    """Naive against batched-cached scoring, float32: speed and agreement."""
    student = Student.load(params)
    lengths = [len(student.prompt_ids(prompt)) for prompt in prompts]
    state_lengths = [len(student.state_ids(prompt)) for prompt in prompts]
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


def dtype_students(params: StudentParameters) -> dict[str, Student]:
    """The student in float32, in bfloat16 with a float32 head, and in bfloat16 with its
    own head (bfloat16 logits)."""
    full = Student.load(params.model_copy(update={"dtype": "float32"}))
    half = Student.load(params.model_copy(update={"dtype": "bfloat16"}))
    coarse = Student(half.model, half.tokenizer, half.params, float32_head=False)
    return {"float32": full, "bfloat16, float32 head": half, "bfloat16 head": coarse}


def compare_dtypes(prompts: list[Prompt], params: StudentParameters, rounds: int) -> None:
    """Batched scoring per dtype: states/s (mean of `rounds` interleaved runs, so every variant
    sees the same share of a busy machine) and the change of the action probabilities."""
    students = dtype_students(params)
    scores: dict[str, np.ndarray] = {}
    seconds: dict[str, list[float]] = {name: [] for name in students}
    for student in students.values():
        student.action_logprobs(prompts[:2])  # warm-up, and the shared prefix is encoded here
    for _ in range(rounds):
        for name, student in students.items():
            scores[name], elapsed = timed(student.action_logprobs, prompts)
            seconds[name].append(elapsed)
    reference = softmax_policy(scores["float32"])
    speed = {name: len(prompts) / np.mean(runs) for name, runs in seconds.items()}
    print(f"{'scoring':24} {'states/s':>9} {'speed-up':>9} {'max |dp|':>9} {'argmax flips':>13}")
    for name, runs in seconds.items():
        probs = softmax_policy(scores[name])
        largest = np.abs(probs - reference).max()
        flips = int((probs.argmax(1) != reference.argmax(1)).sum())
        print(
            f"{name:24} {speed[name]:9.2f} {speed[name] / speed['float32']:8.2f}x "
            f"{largest:9.4f} {flips:6d} of {len(prompts)}"
            f"   (runs: {', '.join(f'{run:.2f} s' for run in runs)})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--states", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--compare", choices=("cache", "dtype"), default="cache")
    parser.add_argument("--rounds", type=int, default=2, help="timed runs per dtype")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="default", help="`student.model`: e.g. a folder")
    args = parser.parse_args()
    params = StudentParameters(model=args.model, batch_size=args.batch_size, device=args.device)

    prompts = benchmark_prompts(args.states)
    print(f"threads: {torch.get_num_threads()}, states: {len(prompts)}, actions: {len(ACTIONS)}")
    print(f"torch CPU capability: {torch.backends.cpu.get_cpu_capability()}")
    if args.compare == "cache":
        compare_cache(prompts, params)
    else:
        compare_dtypes(prompts, params, args.rounds)
    print("load average (1, 5, 15 min): " + ", ".join(f"{load:.2f}" for load in os.getloadavg()))


if __name__ == "__main__":
    main()
