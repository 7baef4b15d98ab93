"""Teachers: for a snapshot, the action to take and short texts that say why.

Two backends share one interface. `BotTeacher` takes BabyAI's bot as the expert and writes its
texts from the state itself: what the mission names, where that is, what blocks the way, and
what the student's action and the suggested one would each do. `OpenAITeacher` asks a
chat-completions model (OpenAI, or any compatible server through `base_url`) with Structured
Outputs whose `suggested_action` is an enum of the valid actions. Every valid answer is cached
on disk under a hash of its request, so a rerun sends nothing; an unusable answer is repaired
once, then replaced by the bot's action and flagged `valid=False`, and that fallback is never
cached: the next run asks again. Retries with backoff on 429/5xx/timeouts are the `openai`
client's own, each attempt bounded by `teacher.timeout_s`. Tokens and cost are summed per
teacher.

A phase that asks a teacher watches its answers with a `TeacherMonitor`: a progress bar of the
answers and requests, and the share of invalid or failed answers held to
`teacher.max_invalid_fraction`; above it the phase stops with `TeacherOutage`, which names the
share, the first errors and the server.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import openai
from dotenv import find_dotenv, load_dotenv
from minigrid.core.constants import DIR_TO_VEC
from minigrid.core.world_object import WorldObj
from minigrid.envs.babyai.core.verifier import AfterInstr, AndInstr, BeforeInstr, PutNextInstr
from pydantic import BaseModel, ValidationError
from tqdm.auto import tqdm

from teachable.parameters import Parameters, TeacherParameters
from teachable.records.env_state import EnvState
from teachable.records.labeled import TeacherAnswer, TeacherHealth
from teachable.records.store import read_json, write_json
from teachable.vocabulary import ACTIONS
from teachable.world.text_world import TextWorld, expert_trajectory

SYSTEM_PROMPT = (
    "You teach an agent that acts in a BabyAI grid world from text. Given its mission, what it "
    "sees and its valid actions, choose the best next action. Answer in JSON: suggested_action "
    "(one of the valid actions), diagnosis (1-2 short sentences on what the agent must notice), "
    "hint (one short sentence of guidance) and contrast (one sentence on why your action beats "
    "the student's action). Be brief; do not reason step by step."
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
        cache hits, tokens, estimated cost, invalid answers and repairs, summed over this
        teacher's life (one run)."""
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
        return "\n".join(lines)


@dataclass(frozen=True)
class Goal:
    """What the agent should head for now: the nearest object the current clause of the
    mission names, or the key of the locked door it names."""

    name: str
    position: tuple[int, int]
    locked_door: str | None = None


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


def _steps(n: int, direction: str) -> str:
    return f"{n} step{'' if n == 1 else 's'} {direction}"


def where(right: int, forward: int) -> str:
    """An offset in the agent's frame, worded like the observations: "1 step left and 2 steps
    forward"; things behind the agent are "back"."""
    parts = []
    if right:
        parts.append(_steps(abs(right), "right" if right > 0 else "left"))
    if forward:
        parts.append(_steps(abs(forward), "forward" if forward > 0 else "back"))
    return " and ".join(parts) or "where you stand"


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


def _clause(instr):
    """The clause of a mission being worked on: sequences move on once a part succeeded."""
    if isinstance(instr, BeforeInstr | AndInstr):
        return _clause(instr.instr_a if instr.a_done != "success" else instr.instr_b)
    if isinstance(instr, AfterInstr):
        return _clause(instr.instr_b if instr.b_done != "success" else instr.instr_a)
    return instr


def _targets(env) -> list:
    """The objects the current clause names, except one the agent already carries."""
    instr = _clause(env.instrs)
    if isinstance(instr, PutNextInstr):
        carried = any(obj is env.carrying for obj in instr.desc_move.obj_set)
        desc = instr.desc_fixed if carried else instr.desc_move
    else:
        desc = instr.desc
    return [obj for obj in desc.obj_set if obj is not env.carrying]


def goal(env) -> Goal | None:
    """The nearest named object, or the key its locked door needs; None when nothing is left."""
    objects = _objects(env)
    targets = [(obj, at) for obj, at in objects if any(obj is t for t in _targets(env))]
    if not targets:
        return None

    def distance(item: tuple[WorldObj, tuple[int, int]]) -> int:
        return sum(abs(step) for step in _bearing(env, item[1]))

    target, position = min(targets, key=distance)
    holding = env.carrying
    has_key = holding is not None and holding.type == "key" and holding.color == target.color
    if target.type == "door" and target.is_locked and not has_key:
        keys = [(obj, at) for obj, at in objects if obj.type == "key" and obj.color == target.color]
        if keys:
            key, key_position = min(keys, key=distance)
            return Goal(_name(key), key_position, locked_door=_name(target))
    return Goal(_name(target), position)


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


def _pose(env, front: tuple[int, int], target: Goal | None) -> Pose:
    return Pose(
        position=(int(env.agent_pos[0]), int(env.agent_pos[1])),
        direction=int(env.agent_dir),
        carrying=None if env.carrying is None else _name(env.carrying),
        ahead=_cell_state(env.grid.get(*front)),
        reach=None if target is None else actions_to_reach(env, target.position),
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


def effect(state: EnvState, action: str, target: Goal | None) -> str:
    """What taking `action` at `state` does, as a verb phrase ("brings you closer to the red
    key"), found by taking it in a restored world."""
    world = TextWorld.restore(state)
    env = world.env.unwrapped
    front = (int(env.front_pos[0]), int(env.front_pos[1]))
    before = _pose(env, front, target)
    result = world.step(action)
    if result.done:
        return "completes the mission" if result.success else "ends the episode without success"
    after = _pose(env, front, target)
    if before.carrying != after.carrying:
        return f"picks up {after.carrying}" if after.carrying else f"drops {before.carrying}"
    if change := _front_change(before.ahead, after.ahead):
        return change
    if (before.position, before.direction) != (after.position, after.direction):
        return _progress(before, after, target, action)
    if action == "go forward":
        return "does not move you: the way ahead is blocked"
    return "changes nothing here"


def _progress(before: Pose, after: Pose, target: Goal | None, action: str) -> str:
    """A move or a turn, judged by the actions still needed to reach the goal."""
    if target is None or before.reach is None or after.reach is None:
        return "moves you forward" if action == "go forward" else f"turns you {action.split()[-1]}"
    if after.reach < before.reach:
        return f"brings you closer to {target.name}"
    if after.reach > before.reach:
        return f"takes you farther from {target.name}"
    return f"does not bring you closer to {target.name}"


def _deed(env, action: str, target: Goal | None) -> str:
    """The suggested action as an instruction that names what it acts on."""
    front = env.grid.get(*env.front_pos)
    if action == "pick up" and front is not None:
        if target is not None and target.locked_door and target.name == _name(front):
            return f"pick up {_name(front)}: it unlocks {target.locked_door}"
        return f"pick up {_name(front)} in front of you"
    if action == "toggle" and front is not None and front.type in ("door", "box"):
        if front.type == "door" and front.is_locked:
            return f"unlock {_name(front)} with the key you carry"
        verb = "close" if front.type == "door" and front.is_open else "open"
        return f"{verb} {_name(front)} in front of you"
    if action == "drop" and env.carrying is not None:
        return f"drop {_name(env.carrying)} here"
    if action in ("turn left", "turn right", "go forward") and target is not None:
        return f"{action} on your way to {target.name}"
    return action


def _diagnosis(mission: str, target: Goal | None, bearing: tuple[int, int] | None) -> str:
    first = f"Your mission is to {mission}."
    if target is None:
        return f"{first} Nothing it names is left to reach."
    if target.locked_door:
        return (
            f"{first} {_capital(target.locked_door)} is locked, so you need {target.name} "
            f"first; it is {where(*bearing)}."
        )
    return f"{first} {_capital(target.name)} is {where(*bearing)}."


def _contrast(state: EnvState, suggested: str, student: str | None, target: Goal | None) -> str:
    good = effect(state, suggested, target)
    if student is None:
        return f"There is no student action to compare with; '{suggested}' {good}."
    if student == suggested:
        return f"'{suggested}' is the right move: it {good}."
    bad = effect(state, student, target)
    if bad == good:
        return (
            f"'{suggested}' and '{student}' do the same here (each {good}); the expert prefers "
            f"'{suggested}'."
        )
    return f"'{suggested}' beats '{student}': '{suggested}' {good}, while '{student}' {bad}."


def _heading(bearing: tuple[int, int] | None, valid_actions: tuple[str, ...]) -> str:
    """A stand-in for a missing expert action: step toward the goal, or turn to face it."""
    if bearing is None:
        return valid_actions[0]
    right, forward = bearing
    action = (
        "go forward" if right == 0 and forward > 0 else "turn left" if right < 0 else "turn right"
    )
    return action if action in valid_actions else valid_actions[0]


class BotTeacher(Teacher):
    """BabyAI's bot as the teacher: its action on the restored state, texts from the state."""

    backend = "bot"

    def answer(self, request: TeacherRequest) -> TeacherAnswer:
        """The bot's action and texts; where the bot has no usable action, a move toward the
        goal stands in, flagged `valid=False`."""
        world = TextWorld.restore(request.state)
        env = world.env.unwrapped
        target = goal(env)
        bearing = None if target is None else _bearing(env, target.position)
        action, problem = world.expert_action(), None
        if action is None:
            problem = "the bot has no action here (episode over, bot failed or bot says done)"
        elif action not in request.valid_actions:
            problem = f"the bot's action {action!r} is not among the valid actions"
        if problem:
            action = _heading(bearing, request.valid_actions)
        student = request.student_action
        return TeacherAnswer(
            suggested_action=action,
            diagnosis=_diagnosis(world.mission, target, bearing),
            hint=_capital(_deed(env, action, target)) + ".",
            contrast=EPISODE_OVER
            if world.done
            else _contrast(request.state, action, student, target),
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
        """The cached answer, or a fresh one; only valid answers are cached, so a request the
        client gave up on, or one whose answer fell back to the bot, is asked again next run."""
        body = self.request_body(request)
        path = self.cache_path(body)
        if path.exists():
            cached = self._cached(path)
            if cached.valid:  # a cache written before fallbacks were kept out of it may hold one
                self.counts["cache_hits"] += 1
                return cached
        answer = self._ask(request, body)
        if answer.valid:
            write_json(path, {"request": body, "answer": answer.model_dump(mode="json")})
        return answer

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
