"""Teachers: for a snapshot, the action to take and short texts that say why.

Two backends share one interface. `BotTeacher` takes BabyAI's bot as the expert and writes its
texts from what the student's observation shows: what the mission needs, where that is in view
(or that it is not in view), what blocks the way, and what the student's action would do. The
texts never give the answer away: they name no action (the contrast names only the student's
own, when it is not the expert's) and no object the observation does not show.
`OpenAITeacher` asks a chat-completions model (OpenAI, or any compatible server through
`base_url`) with Structured Outputs whose `suggested_action` is an enum of the valid actions.
Every valid answer is cached on disk under a hash of its request, so a rerun sends nothing; an
unusable answer is repaired once, then replaced by the bot's action and flagged `valid=False`,
and that fallback is never cached: the next run asks again. An answer whose texts name an
action is flagged (`names_action`) and, by `teacher.action_in_text`, repaired with a neutral
word or replaced by the bot's answer, flagged `valid=False`. Retries with backoff on
429/5xx/timeouts are the `openai` client's own, each attempt bounded by `teacher.timeout_s`.
Tokens and cost are summed per teacher.

A phase that asks a teacher watches its answers with a `TeacherMonitor`: a progress bar of the
answers and requests, and the share of invalid or failed answers held to
`teacher.max_invalid_fraction`; above it the phase stops with `TeacherOutage`, which names the
share, the first errors and the server.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import openai
from dotenv import find_dotenv, load_dotenv
from minigrid.core.constants import DIR_TO_VEC
from minigrid.core.world_object import WorldObj
from minigrid.envs.babyai.core.verifier import (
    AfterInstr,
    AndInstr,
    BeforeInstr,
    GoToInstr,
    ObjDesc,
    OpenInstr,
    PickupInstr,
    PutNextInstr,
)
from pydantic import BaseModel, ValidationError
from tqdm.auto import tqdm

from teachable.parameters import Parameters, TeacherParameters
from teachable.records.env_state import EnvState
from teachable.records.labeled import TeacherAnswer, TeacherHealth
from teachable.records.store import read_json, write_json
from teachable.vocabulary import ACTIONS
from teachable.world.text_world import TextWorld, expert_trajectory, offset_words

SYSTEM_PROMPT = (
    "You teach an agent that acts in a BabyAI grid world from text. Given its mission, what it "
    "sees and its valid actions, choose the best next action. Answer in JSON: suggested_action "
    "(one of the valid actions), diagnosis (1-2 short sentences on what the agent must notice), "
    "hint (one short sentence of guidance) and contrast (one sentence on why the student's "
    "action falls short of yours). Diagnosis, hint and contrast never name a valid action, "
    "neither yours nor another; only the contrast may name the student's action, when it is not "
    "yours. They state only what the observation shows: name no object or door it does not "
    "mention, and place each where it says. Be brief; do not reason step by step."
)


EPISODE_OVER = "The episode is over, so no action changes anything now."


TRANSIENT_ERRORS = (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError)


REPAIR_PROMPT = (
    "Your answer could not be used: {problem}. Answer again with one JSON object whose "
    "suggested_action is one of: {actions}."
)


@dataclass(frozen=True)
class TeacherRequest:
    """One question to a teacher: a snapshot as the student saw it, and what the student did."""

    state: EnvState
    mission: str
    observation: str
    valid_actions: tuple[str, ...] = ACTIONS
    student_action: str | None = None

    def __post_init__(self) -> None:
        if not self.valid_actions:
            raise ValueError("a teacher request needs at least one valid action")
        if self.student_action is not None and self.student_action not in self.valid_actions:
            raise ValueError(
                f"student_action {self.student_action!r} is not one of {self.valid_actions}"
            )

    @classmethod
    def at(cls, world: TextWorld, student_action: str | None = None) -> TeacherRequest:
        """The request for the world's current state, with the six BabyAI actions."""
        return cls(world.state, world.mission, world.observation, ACTIONS, student_action)


class TeacherOutage(RuntimeError):
    """Too large a share of a phase's teacher answers were invalid or failed; the message names
    the share, the first errors and the server."""


class Teacher:
    """One interface for every backend: answers in request order, usage summed per instance."""

    backend = ""
    model: str | None = None
    price_per_1k_input = 0.0
    price_per_1k_output = 0.0
    remote = False  # whether answers come over the network (slow, and can fail)

    def __init__(self, params: TeacherParameters | None = None) -> None:
        self.params = params or TeacherParameters()  # what the labels record it was
        self.counts: Counter[str] = Counter()
        self.on_attempt: Callable[[], None] | None = None  # called as each HTTP attempt starts

    @property
    def server(self) -> str:
        """Where the answers come from, for messages; empty for a local teacher."""
        return ""

    def advise(
        self,
        requests: Sequence[TeacherRequest],
        progress: bool = False,
        monitor: TeacherMonitor | None = None,
    ) -> list[TeacherAnswer]:
        """One answer per request, in order; each is counted by `monitor`, which stops the
        phase (`TeacherOutage`) once too many are invalid."""
        bar = tqdm(
            requests,
            desc=f"teacher ({self.backend})",
            disable=not progress or monitor is not None,
            leave=False,
        )
        answers = []
        for request in bar:
            answer = self.answer(request)
            answers.append(answer)
            self.counts["answers"] += 1
            self.counts["invalid"] += not answer.valid
            if monitor is not None:
                monitor.count(answer)
        return answers

    def answer(self, request: TeacherRequest) -> TeacherAnswer:
        raise NotImplementedError

    def usage(self) -> dict:
        """Answers given, requests sent (and HTTP attempts, retries included), failed requests,
        cache hits, tokens, estimated cost, invalid answers, repairs and answers whose texts
        named an action, summed over this teacher's life (one run)."""
        keys = (
            "answers",
            "requests",
            "attempts",
            "failed_requests",
            "cache_hits",
            "prompt_tokens",
            "completion_tokens",
            "invalid",
            "repairs",
            "names_action",
        )
        usage = {"backend": self.backend, "model": self.model}
        usage.update({key: self.counts[key] for key in keys})
        usage["cost_usd"] = (
            usage["prompt_tokens"] * self.price_per_1k_input
            + usage["completion_tokens"] * self.price_per_1k_output
        ) / 1000
        return usage


FIRST_ERRORS = 3


class TeacherMonitor:
    """Watches one phase's teacher answers: counts the invalid or failed ones (where the bot's
    action stood in) against `max_fraction` of `expected`, the answers the phase's result holds
    (at most), and shows a progress bar of answers, requests and HTTP attempts.

    Once the invalid answers alone exceed the limit, no later answer can bring the share back
    under it, so `count` stops the phase at once with `TeacherOutage` instead of asking on.
    `finish` checks the share over the answers the result holds and returns the record."""

    def __init__(
        self,
        teacher: Teacher,
        what: str,
        expected: int,
        max_fraction: float,
        progress: bool = False,
    ) -> None:
        self.teacher, self.what, self.expected = teacher, what, expected
        self.max_fraction = max_fraction
        self.asked = 0
        self.invalid = 0
        self.first_errors: list[str] = []
        self.bar = tqdm(
            total=expected,
            desc=f"{what}: teacher ({teacher.backend})",
            unit="answer",
            disable=not (progress and teacher.remote),
        )
        teacher.on_attempt = self._show

    def _show(self) -> None:
        counts = self.teacher.counts
        self.bar.set_postfix(
            requests=counts["requests"],
            attempts=counts["attempts"],
            failed=counts["failed_requests"],
            invalid=self.invalid,
            refresh=True,
        )

    def count(self, answer: TeacherAnswer) -> None:
        """Count one answer; raise `TeacherOutage` once the share is sure to exceed the limit."""
        self.asked += 1
        if not answer.valid:
            self.invalid += 1
            problem = answer.problem or "invalid answer"
            if len(self.first_errors) < FIRST_ERRORS and problem not in self.first_errors:
                self.first_errors.append(problem)
        self.bar.update(1)
        self._show()
        if self._over(self.expected):
            self.close()
            raise TeacherOutage(self.message(self.expected, stopped=True))

    def _over(self, total: int) -> bool:
        return total > 0 and self.invalid / total > self.max_fraction

    def close(self) -> None:
        self.bar.close()
        self.teacher.on_attempt = None

    def finish(self, total: int | None = None) -> TeacherHealth:
        """The health of `total` answers (default: `expected`), of which those not asked
        here were valid before; `TeacherOutage` when the share exceeds the limit."""
        self.close()
        total = self.expected if total is None else total
        if self._over(total):
            raise TeacherOutage(self.message(total))
        return self.health(total)

    def health(self, total: int) -> TeacherHealth:
        counts = self.teacher.counts
        return TeacherHealth(
            what=self.what,
            backend=self.teacher.backend,
            model=self.teacher.model,
            server=self.teacher.server,
            answers=total,
            invalid=self.invalid,
            share=round(self.invalid / total, 4) if total else 0.0,
            max_invalid_fraction=self.max_fraction,
            first_errors=self.first_errors,
            requests=counts["requests"],
            failed_requests=counts["failed_requests"],
            cache_hits=counts["cache_hits"],
        )

    def message(self, total: int, stopped: bool = False) -> str:
        """What went wrong, where, and what to do."""
        share = self.invalid / total
        head = (
            f"teacher outage in {self.what}: {self.invalid} of the {total} teacher answers "
            f"{'it needs are' if stopped else 'were'} invalid or failed ({share:.1%}"
            f"{' at least, after ' + str(self.asked) + ' asked' if stopped else ''}), above "
            f"teacher.max_invalid_fraction = {self.max_fraction:g}"
        )
        teacher = self.teacher
        lines = [
            head,
            f"  server: {teacher.server or 'local'} ({teacher.backend} backend"
            + (f", model {teacher.model})" if teacher.model else ")"),
            f"  requests sent: {teacher.counts['requests']}, failed after retries: "
            f"{teacher.counts['failed_requests']}",
            "  first errors:",
            *(f"    - {error}" for error in self.first_errors),
            "  Nothing invalid was cached: once the server answers, the next run asks these "
            "again (teacher.timeout_s and teacher.max_retries bound each request).",
        ]
        if teacher.params.action_in_text == "exclude" and teacher.counts["names_action"]:
            lines.append(
                f"  answers excluded for naming an action: {teacher.counts['names_action']}; the "
                "cache keeps them as given, and teacher.action_in_text = repair uses them."
            )
        return "\n".join(lines)


ACTION_PATTERNS = {
    action: re.compile(r"\b" + r"[\s-]*".join(action.split()) + r"\b", re.IGNORECASE)
    for action in ACTIONS
}

TEXT_FIELDS = ("diagnosis", "hint", "contrast")

NEUTRAL_ACTION = "act"


def named_actions(text: str) -> list[str]:
    """The action strings `text` names as phrases, in any case, in the order of `ACTIONS`."""
    return [action for action, pattern in ACTION_PATTERNS.items() if pattern.search(text)]


def leaked_actions(answer: TeacherAnswer, student_action: str | None) -> dict[str, list[str]]:
    """By text field, the actions it names that it may not: any in the diagnosis and hint; in
    the contrast any but the student's own, unless that is the suggested action."""
    own = {student_action} - {answer.suggested_action}
    leaks = {}
    for field in TEXT_FIELDS:
        allowed = own if field == "contrast" else set()
        found = [
            action for action in named_actions(getattr(answer, field)) if action not in allowed
        ]
        if found:
            leaks[field] = found
    return leaks


def neutral_text(text: str, actions: Sequence[str]) -> str:
    """`text` with each of `actions` replaced by a word that names no action."""
    for action in actions:
        text = ACTION_PATTERNS[action].sub(
            lambda match: _capital(NEUTRAL_ACTION) if match[0][0].isupper() else NEUTRAL_ACTION,
            text,
        )
    return text


@dataclass(frozen=True)
class Seen:
    """An object the student's observation shows: the object, its cell, and its offset
    (right, forward) from the agent."""

    obj: WorldObj
    position: tuple[int, int]
    offset: tuple[int, int]

    @property
    def name(self) -> str:
        return _name(self.obj)

    @property
    def where(self) -> str:
        """Its place worded as the observation words it."""
        return offset_words(*self.offset)

    @property
    def in_front(self) -> bool:
        return self.offset == (0, 1)


@dataclass(frozen=True)
class Sight:
    """What the observation shows of what the mission needs now: how the mission words it,
    what the current clause asks of it (reach, hold, open or place), the nearest such object
    in view, and whether that is a locked door the agent carries no key for (then its key, if
    in view)."""

    wanted: str
    task: str
    target: Seen | None = None
    needs_key: bool = False
    key: Seen | None = None

    @property
    def goal(self) -> Seen | None:
        """What to head for, as far as the observation shows: the key, or the target."""
        return self.key if self.needs_key else self.target


@dataclass(frozen=True)
class Pose:
    """What an action can change: where the agent is, its heading, what it carries, the cell
    in front of it, and how many actions it still needs to reach the goal."""

    position: tuple[int, int]
    direction: int
    carrying: str | None
    ahead: tuple
    reach: int | None


def _name(obj: WorldObj) -> str:
    return f"the {obj.color} {obj.type}"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _bearing(env, position: tuple[int, int]) -> tuple[int, int]:
    """(right, forward) steps from the agent to `position`, in the agent's own frame."""
    dx, dy = position[0] - int(env.agent_pos[0]), position[1] - int(env.agent_pos[1])
    forward, right = env.dir_vec, env.right_vec
    return int(dx * right[0] + dy * right[1]), int(dx * forward[0] + dy * forward[1])


def _objects(env) -> list[tuple[WorldObj, tuple[int, int]]]:
    """Every object on the grid but walls, with its position."""
    cells = (
        (env.grid.get(x, y), (x, y)) for x in range(env.grid.width) for y in range(env.grid.height)
    )
    return [
        (cell, position) for cell, position in cells if cell is not None and cell.type != "wall"
    ]


def in_view(env) -> list[Seen]:
    """The objects the student's observation shows (the visible cells of its view)."""
    _, visible = env.gen_obs_grid()
    seen = []
    for obj, position in _objects(env):
        cell = env.relative_coords(*position)
        if cell is not None and visible[cell]:
            seen.append(Seen(obj, position, _bearing(env, position)))
    return seen


def _clause(instr):
    """The clause of a mission being worked on: sequences move on once a part succeeded."""
    if isinstance(instr, BeforeInstr | AndInstr):
        return _clause(instr.instr_a if instr.a_done != "success" else instr.instr_b)
    if isinstance(instr, AfterInstr):
        return _clause(instr.instr_b if instr.b_done != "success" else instr.instr_a)
    return instr


CLAUSE_TASKS = {GoToInstr: "reach", PickupInstr: "hold", OpenInstr: "open"}


def _task(env) -> tuple[str, ObjDesc]:
    """What the current clause asks (reach, hold, open or place) and of which objects."""
    instr = _clause(env.instrs)
    if isinstance(instr, PutNextInstr):
        if any(obj is env.carrying for obj in instr.desc_move.obj_set):
            return "place", instr.desc_fixed
        return "hold", instr.desc_move
    return CLAUSE_TASKS[type(instr)], instr.desc


def _nearest(items: Sequence[Seen]) -> Seen | None:
    return min(items, key=lambda item: sum(map(abs, item.offset)), default=None)


def _locked(obj: WorldObj) -> bool:
    return obj.type == "door" and obj.is_locked


def sight(env) -> Sight:
    """What the observation shows of what the mission needs now."""
    task, desc = _task(env)
    wanted = " ".join(word for word in (desc.color, desc.type or "object") if word)
    seen = in_view(env)
    target = _nearest([item for item in seen if any(item.obj is obj for obj in desc.obj_set)])
    if target is None or not _locked(target.obj):
        return Sight(wanted, task, target)
    holding = env.carrying
    if holding is not None and holding.type == "key" and holding.color == target.obj.color:
        return Sight(wanted, task, target)
    keys = [it for it in seen if it.obj.type == "key" and it.obj.color == target.obj.color]
    return Sight(wanted, task, target, needs_key=True, key=_nearest(keys))


def actions_to_reach(env, position: tuple[int, int]) -> int | None:
    """Fewest turns and steps until the agent faces `position` from a cell next to it (closed
    doors count as passable, locked ones do not); None when no way leads there."""
    start = (int(env.agent_pos[0]), int(env.agent_pos[1]), int(env.agent_dir))
    distance = {start: 0}
    queue = deque([start])
    while queue:
        x, y, direction = pose = queue.popleft()
        dx, dy = DIR_TO_VEC[direction]
        if (x + dx, y + dy) == tuple(position):
            return distance[pose]
        after = [(x, y, (direction - 1) % 4), (x, y, (direction + 1) % 4)]
        cell = env.grid.get(x + dx, y + dy)
        if cell is None or cell.can_overlap() or (cell.type == "door" and not cell.is_locked):
            after.append((x + dx, y + dy, direction))
        for step in after:
            if step not in distance:
                distance[step] = distance[pose] + 1
                queue.append(step)
    return None


def _cell_state(cell: WorldObj | None) -> tuple:
    if cell is None:
        return ()
    if cell.type == "door":
        return (cell.type, cell.color, cell.is_open, cell.is_locked)
    return (cell.type, cell.color)


def _pose(env, front: tuple[int, int], goal: Seen | None) -> Pose:
    return Pose(
        position=(int(env.agent_pos[0]), int(env.agent_pos[1])),
        direction=int(env.agent_dir),
        carrying=None if env.carrying is None else _name(env.carrying),
        ahead=_cell_state(env.grid.get(*front)),
        reach=None if goal is None else actions_to_reach(env, goal.position),
    )


def _front_change(before: tuple, after: tuple) -> str | None:
    """What a toggle did to the cell in front, if anything (a box gives way to its contents)."""
    if before == after or not before:
        return None
    thing = f"the {before[1]} {before[0]}"
    if before[0] != "door":
        return f"opens {thing}"
    if before[3] and not after[3]:
        return f"unlocks {thing}"
    return f"opens {thing}" if after[2] else f"closes {thing}"


def effect(state: EnvState, action: str, goal: Seen | None) -> str:
    """What taking `action` at `state` does, as a verb phrase ("brings you closer to the red
    key"), found by taking it in a restored world; progress is judged only toward a goal the
    observation shows."""
    world = TextWorld.restore(state)
    env = world.env.unwrapped
    front = (int(env.front_pos[0]), int(env.front_pos[1]))
    before = _pose(env, front, goal)
    result = world.step(action)
    if result.done:
        return "completes the mission" if result.success else "ends the episode without success"
    after = _pose(env, front, goal)
    if before.carrying != after.carrying:
        return _handled(before.carrying, after.carrying, goal)
    if change := _front_change(before.ahead, after.ahead):
        return change
    if (before.position, before.direction) != (after.position, after.direction):
        return _progress(before, after, goal, action)
    if action == "go forward":
        return "does not move you: the way ahead is blocked"
    return "changes nothing here"


def _handled(before: str | None, after: str | None, goal: Seen | None) -> str:
    """A change of what the agent carries, and whether it is what the mission needs now."""
    if after is None:
        return f"drops {before}"
    if goal is None or goal.name == after:
        return f"picks up {after}"
    return f"picks up {after}, but the mission needs {goal.name}"


def _progress(before: Pose, after: Pose, goal: Seen | None, action: str) -> str:
    """A move or a turn, judged by the actions still needed to reach the goal."""
    if goal is None or before.reach is None or after.reach is None:
        return "moves you forward" if action == "go forward" else f"turns you {action.split()[-1]}"
    if after.reach < before.reach:
        return f"brings you closer to {goal.name}"
    if after.reach > before.reach:
        return f"takes you farther from {goal.name}"
    return f"does not bring you closer to {goal.name}"


def _blocker(env, view: Sight) -> str | None:
    """What stands right in front of the agent and blocks its way, unless the mission needs it."""
    front = env.grid.get(*env.front_pos)
    needed = [item.obj for item in (view.target, view.key) if item is not None]
    if front is None or front.can_overlap() or any(front is obj for obj in needed):
        return None
    thing = "a wall" if front.type == "wall" else _name(front)
    return f"{_capital(thing)} right in front of you blocks the way."


def _diagnosis(env, view: Sight) -> str:
    """What the observation shows of the mission's need, and what blocks the way."""
    target = view.target
    if target is None:
        found = f"No {view.wanted} the mission names is in view."
    elif view.needs_key:
        key = view.key
        opener = "no key for it is in view" if key is None else f"{key.name} {key.where} opens it"
        found = f"{_capital(target.name)} {target.where} is locked; {opener}."
    elif _locked(target.obj):
        found = f"{_capital(target.name)} {target.where} is locked, and the key you carry opens it."
    else:
        found = f"{_capital(target.name)} is {target.where}."
    return " ".join(filter(None, (found, _blocker(env, view))))


HINTS = {  # what a clause asks of its goal: (while the goal is farther, once it is in front)
    "reach": ("You reach {goal} once it is right in front of you.",) * 2,
    "hold": (
        "You can hold {goal} once it is right in front of you.",
        "{Goal} right in front of you is the one to hold.",
    ),
    "open": (
        "You can open {goal} once it is right in front of you.",
        "{Goal} right in front of you is the door to open.",
    ),
    "place": ("{Carried} you carry must end up in an empty cell next to {goal}.",) * 2,
}

FULL_HANDS = "You carry {carried}, and your hands must be free to hold another."


def _hint(env, view: Sight) -> str:
    """What the mission needs next, in terms of what the observation shows, and whether the
    agent's hands must be freed for it."""
    goal = view.goal
    task = "hold" if view.needs_key else view.task
    carried = "" if env.carrying is None else _name(env.carrying)
    if goal is None:
        missing = "a key for it" if view.needs_key else "it"
        need = f"Explore the room until {missing} comes into view."
    else:
        need = HINTS[task][goal.in_front].format(
            goal=goal.name, Goal=_capital(goal.name), Carried=_capital(carried)
        )
    if task != "hold" or not carried:
        return need
    return f"{need} {FULL_HANDS.format(carried=carried)}"


def _contrast(state: EnvState, suggested: str, student: str | None, goal: Seen | None) -> str:
    """Why the student's action falls short, naming only that action."""
    if student is None:
        return "There is no student action to compare with."
    if student == suggested:
        return "Your action is the right one here."
    bad = effect(state, student, goal)
    if bad == effect(state, suggested, goal):
        return f"'{student}' {bad}, yet another action is better here."
    return f"'{student}' {bad}."


def _heading(goal: Seen | None, valid_actions: tuple[str, ...]) -> str:
    """A stand-in for a missing expert action: step toward the goal in view, or turn to it."""
    if goal is None:
        return valid_actions[0]
    right, forward = goal.offset
    action = (
        "go forward" if right == 0 and forward > 0 else "turn left" if right < 0 else "turn right"
    )
    return action if action in valid_actions else valid_actions[0]


EPISODE_OVER_TEXTS = ("The episode is over.", "Nothing is left to do.", EPISODE_OVER)


class BotTeacher(Teacher):
    """BabyAI's bot as the teacher: its action on the restored state, texts from what the
    student's observation shows, naming no action but the student's own in the contrast."""

    backend = "bot"

    def answer(self, request: TeacherRequest) -> TeacherAnswer:
        """The bot's action and texts; where the bot has no usable action, a move toward the
        goal in view stands in, flagged `valid=False`."""
        world = TextWorld.restore(request.state)
        action, problem = world.expert_action(), None  # replays the episode anew, so look after
        env = world.env.unwrapped
        view = None if world.done else sight(env)
        if action is None:
            problem = "the bot has no action here (episode over, bot failed or bot says done)"
        elif action not in request.valid_actions:
            problem = f"the bot's action {action!r} is not among the valid actions"
        if problem:
            action = _heading(None if view is None else view.goal, request.valid_actions)
        diagnosis, hint, contrast = (
            EPISODE_OVER_TEXTS
            if view is None
            else (
                _diagnosis(env, view),
                _hint(env, view),
                _contrast(request.state, action, request.student_action, view.goal),
            )
        )
        return TeacherAnswer(
            suggested_action=action,
            diagnosis=diagnosis,
            hint=hint,
            contrast=contrast,
            valid=problem is None,
            backend=self.backend,
            problem=problem,
        )


class Reply(BaseModel):
    """The JSON a chat model must return."""

    suggested_action: str
    diagnosis: str
    hint: str
    contrast: str


@dataclass(frozen=True)
class Completion:
    """One chat-completions call: its text, or why the client gave up, and its tokens."""

    content: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failure: str | None = None


def prompt_messages(request: TeacherRequest) -> list[dict]:
    """The chat messages that ask about one snapshot."""
    student = request.student_action or "none yet"
    question = (
        f"Mission: {request.mission}\n"
        f"Observation: {request.observation}\n"
        f"Valid actions: {', '.join(request.valid_actions)}\n"
        f"Student's action: {student}"
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]


def response_format(valid_actions: Sequence[str]) -> dict:
    """Structured Outputs: a strict JSON schema whose action is an enum of the valid actions."""
    text = {"type": "string"}
    schema = {
        "type": "object",
        "properties": {
            "suggested_action": {"type": "string", "enum": list(valid_actions)},
            "diagnosis": text,
            "hint": text,
            "contrast": text,
        },
        "required": ["suggested_action", "diagnosis", "hint", "contrast"],
        "additionalProperties": False,
    }
    return {
        "type": "json_schema",
        "json_schema": {"name": "teacher_answer", "strict": True, "schema": schema},
    }


def read_reply(content: str | None, valid_actions: Sequence[str]) -> tuple[Reply | None, str]:
    """The reply in a model's text, or what is wrong with it."""
    try:
        data = json.loads(content or "")
    except json.JSONDecodeError:
        return None, "the answer is not valid JSON"
    try:
        reply = Reply.model_validate(data)
    except ValidationError as error:
        fields = ", ".join(".".join(map(str, item["loc"])) or "<root>" for item in error.errors())
        return None, f"the answer lacks or garbles the field(s) {fields}"
    if reply.suggested_action not in valid_actions:
        return None, f"suggested_action {reply.suggested_action!r} is not one of the valid actions"
    return reply, ""


class OpenAITeacher(Teacher):
    """A chat-completions model as the teacher, cached on disk, with the bot as the fallback."""

    backend = "openai"
    remote = True

    def __init__(self, params: TeacherParameters, cache_dir: Path) -> None:
        super().__init__(params)
        load_dotenv(find_dotenv(usecwd=True))
        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            raise RuntimeError(
                "the openai teacher needs the OPENAI_API_KEY environment variable (or a .env "
                "file that sets it); set it, or set the parameter teacher.backend to 'bot'"
            )
        self.model = params.model
        self.price_per_1k_input = params.price_per_1k_input
        self.price_per_1k_output = params.price_per_1k_output
        self.cache_dir = Path(cache_dir)
        self.client = openai.OpenAI(
            base_url=params.base_url,
            api_key=key,
            max_retries=params.max_retries,
            timeout=params.timeout_s,
            http_client=openai.DefaultHttpxClient(
                timeout=params.timeout_s, event_hooks={"request": [self._attempt]}
            ),
        )
        self.fallback = BotTeacher()

    @property
    def server(self) -> str:
        return str(self.client.base_url)

    def _attempt(self, request: object) -> None:
        """Count each HTTP attempt (the client's retries included) as it starts."""
        self.counts["attempts"] += 1
        if self.on_attempt is not None:
            self.on_attempt()

    def request_body(self, request: TeacherRequest) -> dict:
        """Everything that decides the model's answer; its hash is the cache key."""
        return {
            "model": self.params.model,
            "messages": prompt_messages(request),
            "response_format": response_format(request.valid_actions),
            "temperature": self.params.temperature,
            "max_tokens": self.params.max_tokens,
        }

    def cache_path(self, body: dict) -> Path:
        """One JSON file per request, named by the SHA-256 of its body."""
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        return self.cache_dir / f"{digest}.json"

    def answer(self, request: TeacherRequest) -> TeacherAnswer:
        """The cached answer, or a fresh one, screened for named actions; only valid answers
        are cached, as the model gave them, so a request the client gave up on, or one whose
        answer fell back to the bot, is asked again next run."""
        body = self.request_body(request)
        path = self.cache_path(body)
        cached = self._cached(path) if path.exists() else None
        if cached is not None and cached.valid:  # an old cache may hold a fallback
            self.counts["cache_hits"] += 1
            return self._screened(request, cached)
        answer = self._ask(request, body)
        if not answer.valid:
            return answer
        write_json(path, {"request": body, "answer": answer.model_dump(mode="json")})
        return self._screened(request, answer)

    def _screened(self, request: TeacherRequest, answer: TeacherAnswer) -> TeacherAnswer:
        """`answer` if its texts name no action they may not; else flagged and, by
        `teacher.action_in_text`, repaired (and checked again) or replaced by the bot's."""
        leaks = leaked_actions(answer, request.student_action)
        if not leaks:
            return answer
        self.counts["names_action"] += 1
        named = [action for action in ACTIONS if any(action in found for found in leaks.values())]
        if self.params.action_in_text == "repair":
            texts = {field: neutral_text(getattr(answer, field), leaks[field]) for field in leaks}
            repaired = answer.model_copy(update={**texts, "names_action": named})
            if not leaked_actions(repaired, request.student_action):
                return repaired
        problem = f"the answer's texts name the action(s) {', '.join(map(repr, named))}"
        source = {"backend", "model", "cached", "prompt_tokens", "completion_tokens"}
        kept = answer.model_dump(include=source)
        update = {**kept, "valid": False, "problem": problem, "names_action": named}
        return self.fallback.answer(request).model_copy(update=update)

    def _cached(self, path: Path) -> TeacherAnswer:
        try:
            return TeacherAnswer.model_validate({**read_json(path)["answer"], "cached": True})
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"teacher cache file {path} is unreadable ({error}); delete it to ask again"
            ) from None

    def _ask(self, request: TeacherRequest, body: dict) -> TeacherAnswer:
        """Ask once and repair once; the bot's answer, flagged invalid, when neither is usable."""
        calls = [self._complete(body, body["messages"])]
        reply, problem = read_reply(calls[0].content, request.valid_actions)
        if reply is None and calls[0].failure is None:
            self.counts["repairs"] += 1
            repair = REPAIR_PROMPT.format(problem=problem, actions=", ".join(request.valid_actions))
            messages = [
                *body["messages"],
                {"role": "assistant", "content": calls[0].content or ""},
                {"role": "user", "content": repair},
            ]
            calls.append(self._complete(body, messages))
            reply, problem = read_reply(calls[1].content, request.valid_actions)
        failures = [call.failure for call in calls if call.failure]
        tokens = {
            "prompt_tokens": sum(call.prompt_tokens for call in calls),
            "completion_tokens": sum(call.completion_tokens for call in calls),
        }
        source = {"backend": self.backend, "model": self.model, **tokens}
        if reply is None:
            problem = failures[-1] if failures else problem
            update = {**source, "valid": False, "problem": problem}
            return self.fallback.answer(request).model_copy(update=update)
        return TeacherAnswer(**reply.model_dump(), **source)

    def _complete(self, body: dict, messages: list[dict]) -> Completion:
        """One call through the client, which retries 429/5xx/timeouts with its own backoff.
        Once it gives up on those, the call failed; any other error (a bad key, a model the
        server lacks, a schema it refuses) is a setup mistake and is raised."""
        self.counts["requests"] += 1
        try:
            response = self.client.chat.completions.create(**{**body, "messages": messages})
        except TRANSIENT_ERRORS as error:
            self.counts["failed_requests"] += 1
            return Completion(None, failure=f"the request failed: {error}")
        usage = response.usage
        prompt_tokens = usage.prompt_tokens if usage else 0
        completion_tokens = usage.completion_tokens if usage else 0
        self.counts["prompt_tokens"] += prompt_tokens
        self.counts["completion_tokens"] += completion_tokens
        content = response.choices[0].message.content if response.choices else None
        return Completion(content, prompt_tokens, completion_tokens)


def teacher_cache_dir(params: Parameters) -> Path:
    """`teacher.cache_dir` (relative to the parameter file), else `<run dir>/teacher_cache`."""
    folder = params.teacher.cache_dir
    if folder is None:
        return params.layout.teacher_cache
    if not folder.is_absolute() and params.source is not None:
        folder = params.source.parent / folder
    return folder.resolve()


def make_teacher(params: Parameters) -> Teacher:
    """The teacher `teacher.backend` names; the openai one checks its key here, before work."""
    if params.teacher.backend == "openai":
        return OpenAITeacher(params.teacher, teacher_cache_dir(params))
    return BotTeacher(params.teacher)


@dataclass(frozen=True)
class Played:
    """An expert's episode from a state: its actions, whether it reached the goal, and how
    many of its steps took the bot's action because the teacher model gave no valid answer."""

    actions: tuple[str, ...]
    success: bool
    fallback_steps: int = 0


class BotPlayer:
    """Experiment B's expert is BabyAI's bot itself."""

    name = "bot"

    def monitor(self, what: str, expected: int, progress: bool = False) -> TeacherMonitor | None:
        """The bot needs no watching: it asks no one."""
        return None

    def play(
        self, state: EnvState, max_steps: int, monitor: TeacherMonitor | None = None
    ) -> Played:
        actions, success = expert_trajectory(state, max_steps)
        return Played(tuple(actions), success)


class TeacherPlayer:
    """Experiment B's expert is a teacher model taking its suggested action at every step (the
    bot's action where its answer is not valid: a fallback step)."""

    def __init__(self, teacher: Teacher, max_invalid_fraction: float) -> None:
        self.teacher = teacher
        self.max_invalid_fraction = max_invalid_fraction
        self.name = teacher.model or teacher.backend

    def monitor(self, what: str, expected: int, progress: bool = False) -> TeacherMonitor:
        """Watch the model's answers over at most `expected` steps."""
        return TeacherMonitor(self.teacher, what, expected, self.max_invalid_fraction, progress)

    def play(
        self, state: EnvState, max_steps: int, monitor: TeacherMonitor | None = None
    ) -> Played:
        world = TextWorld.restore(state)
        actions: list[str] = []
        fallback_steps = 0
        while not world.done and len(actions) < max_steps:
            (answer,) = self.teacher.advise([TeacherRequest.at(world)], monitor=monitor)
            fallback_steps += not answer.valid
            world.step(answer.suggested_action)
            actions.append(answer.suggested_action)
        return Played(tuple(actions), world.success, fallback_steps)


def trajectory_player(params: Parameters) -> BotPlayer | TeacherPlayer:
    """Who plays Phase 0's experiment B: the bot directly, or, with the `openai` backend, the
    teacher model (its key is checked here, before work)."""
    if params.teacher.backend == "bot":
        return BotPlayer()
    return TeacherPlayer(make_teacher(params), params.teacher.max_invalid_fraction)
