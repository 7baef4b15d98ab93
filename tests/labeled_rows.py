"""Labeled snapshots made by hand on real BabyAI states, for the tests of the training phases.

The states, observations, expert actions, the student's distributions and the bot teacher's
answers are real; U, leverage, CPT and the quadrant are set by hand, so a test can choose them
without running the Phase 1 labeler.
"""

from __future__ import annotations

from collections.abc import Sequence

from teachable.models.conditions import teacher_request
from teachable.models.student import Student
from teachable.models.teachers import BotTeacher
from teachable.phases.phase0_snapshots import expert_snapshots
from teachable.records.env_state import EnvState
from teachable.records.labeled import CPT, LabeledSnapshot, Leverage
from teachable.vocabulary import QUADRANTS
from teachable.world.text_world import env_id, expert_trajectory


def bot_states(level: str, seed: int, count: int) -> list[tuple[EnvState, str, bool]]:
    """The last `count` decision states of the bot's run on a task, with its action there:
    close to the goal, so that short rollouts from them can succeed."""
    task = EnvState(env_id(level), seed)
    actions, success = expert_trajectory(task, 64)
    assert success and len(actions) >= count
    steps = range(len(actions) - count, len(actions))
    return [(EnvState(task.env_id, seed, tuple(actions[:k])), actions[k], True) for k in steps]


def labeled_rows(
    student: Student, tasks: Sequence[tuple[str, int]], per_task: int
) -> list[LabeledSnapshot]:
    """`per_task` snapshots of each task, the quadrants dealt in turn over the rows and
    ELP_net growing with the row's index."""
    picked = [state for level, seed in tasks for state in bot_states(level, seed, per_task)]
    snapshots = expert_snapshots(student, picked)
    answers = BotTeacher().advise([teacher_request(snapshot) for snapshot in snapshots])
    rows = []
    for index, (snapshot, answer) in enumerate(zip(snapshots, answers, strict=True)):
        elp = round(index / len(snapshots), 4)
        rates = {"base": 0.0, "placebo": 0.0, "demo": elp, "hint": 0.0, "contrast": 0.0}
        rows.append(
            LabeledSnapshot.of(snapshot).model_copy(
                update={
                    "U": 0.5,
                    "U_method": "entropy",
                    "leverage": Leverage(L_local=0.0, p_student=0.0, p_forced=0.0, n=1),
                    "cpt": CPT(
                        p=rates,
                        ELP={"demo": elp, "hint": 0.0, "contrast": 0.0},
                        ELP_net=elp,
                        route_net="demo",
                        n_per_condition=1,
                    ),
                    "teacher": answer,
                    "quadrant": QUADRANTS[index % len(QUADRANTS)],
                }
            )
        )
    return rows
