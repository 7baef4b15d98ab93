"""BabyAI as text: observations, the six actions, replayable env state, the bot expert.

A task is `(env_id, seed)`; an `EnvState` adds the action prefix taken since reset, and a
`TextWorld` is rebuilt from it exactly by resetting with the seed and replaying the prefix.

Expert: one `BabyAIBot` per world watches from reset, told every action taken (BabyAI's
advising mode, `replan(last_action)`; a fresh bot takes over where it raises), so its advice is
a pure function of the `EnvState` and a restored world advises exactly as the live one did.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import gymnasium as gym
import minigrid  # noqa: F401  (registers the BabyAI-* ids with gymnasium)
import numpy as np
from minigrid.core.grid import Grid
from minigrid.core.world_object import WorldObj
from minigrid.utils.baby_ai_bot import BabyAIBot
from tqdm.auto import tqdm

ACTIONS: tuple[str, ...] = ("turn left", "turn right", "go forward", "pick up", "drop", "toggle")

_DONE = 6  # MiniGrid's `done` action: the bot proposes it, the student is never offered it
_VIEW_LINES = {"forward": (0, -1), "left": (-1, 0), "right": (1, 0)}  # steps in view coords


def env_id(level: str) -> str:
    """Full gymnasium id of a BabyAI level: "GoToLocal" -> "BabyAI-GoToLocal-v0"."""
    full = level if level.startswith("BabyAI-") else f"BabyAI-{level}-v0"
    if full not in gym.registry:
        raise ValueError(f"unknown BabyAI level {level!r} (no gymnasium id {full!r})")
    return full


def _action_index(action: str) -> int:
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; valid actions: {', '.join(ACTIONS)}")
    return ACTIONS.index(action)


@dataclass(frozen=True)
class EnvState:
    """A BabyAI episode as plain data: reset `env_id` with `seed`, then take `actions`."""

    env_id: str
    seed: int
    actions: tuple[str, ...] = ()

    @property
    def task(self) -> tuple[str, int]:
        return (self.env_id, self.seed)

    def then(self, action: str) -> EnvState:
        """The state one action later (the action is checked, not simulated)."""
        _action_index(action)
        return EnvState(self.env_id, self.seed, (*self.actions, action))

    def to_dict(self) -> dict:
        return {"env_id": self.env_id, "seed": self.seed, "actions": list(self.actions)}

    @classmethod
    def from_dict(cls, data: dict) -> EnvState:
        """Read the JSON form; a missing or bad field is an error naming it."""
        if not isinstance(data, dict):
            raise ValueError(f"env state must be a mapping, got {type(data).__name__}")
        missing = [key for key in ("env_id", "seed") if key not in data]
        if missing:
            raise ValueError(f"env state lacks field(s) {missing}")
        if not isinstance(data["env_id"], str):
            raise ValueError(f"env state field env_id must be a string, got {data['env_id']!r}")
        seed = data["seed"]
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"env state field seed must be an integer >= 0, got {seed!r}")
        actions = data.get("actions", [])
        if not isinstance(actions, list) or any(a not in ACTIONS for a in actions):
            raise ValueError(f"env state field actions must list actions of {ACTIONS}")
        return cls(data["env_id"], seed, tuple(actions))


@dataclass(frozen=True)
class StepResult:
    reward: float
    done: bool
    success: bool


def _steps(n: int, direction: str) -> str:
    return f"{n} step{'' if n == 1 else 's'} {direction}"


def _offset(right: int, forward: int) -> str:
    """ "1 step left and 2 steps forward"; an object in line gets one component."""
    parts = []
    if right:
        parts.append(_steps(abs(right), "right" if right > 0 else "left"))
    if forward:
        parts.append(_steps(forward, "forward"))
    return " and ".join(parts)


def _name(obj: WorldObj) -> str:
    """The object with its article: "a red key", "an open yellow door"."""
    words = [obj.color, obj.type]
    if obj.type == "door":
        words.insert(0, "open" if obj.is_open else "locked" if obj.is_locked else "closed")
    article = "an" if words[0][0] in "aeiou" else "a"
    return " ".join([article, *words])


def _wall_distance(view: Grid, visible: np.ndarray, step: tuple[int, int]) -> int | None:
    """Steps from the agent to the wall in line with it, if nothing stands between."""
    x, y = view.width // 2, view.height - 1
    for distance in range(1, view.height):
        x, y = x + step[0], y + step[1]
        if not (0 <= x < view.width and y >= 0 and visible[x, y]):
            return None
        cell = view.get(x, y)
        if cell is not None:
            return distance if cell.type == "wall" else None
    return None


def describe(env: gym.Env) -> str:
    """What the agent carries, the walls in line with it, and what its 7x7 view shows."""
    unwrapped = env.unwrapped
    view, visible = unwrapped.gen_obs_grid()
    sentences = []
    if unwrapped.carrying is not None:
        sentences.append(f"You carry {_name(unwrapped.carrying)}.")
    for direction, step in _VIEW_LINES.items():
        distance = _wall_distance(view, visible, step)
        if distance is not None:
            sentences.append(f"You see a wall {_steps(distance, direction)}.")
    agent_x, agent_y = view.width // 2, view.height - 1
    things = [
        (x - agent_x, agent_y - y, view.get(x, y))
        for x in range(view.width)
        for y in range(view.height)
        if visible[x, y] and (x, y) != (agent_x, agent_y)
    ]
    things = [(r, f, obj) for r, f, obj in things if obj is not None and obj.type != "wall"]
    for right, forward, obj in sorted(things, key=lambda t: (abs(t[0]) + t[1], t[1], t[0])):
        sentences.append(f"You see {_name(obj)} {_offset(right, forward)}.")
    return " ".join(sentences) or "You see nothing nearby."


class TextWorld:
    """One BabyAI episode seen as text, with the bot's advice at every step."""

    def __init__(self, env_id: str, seed: int) -> None:
        self.env_id = env_id
        self.seed = seed
        self.env = gym.make(env_id, render_mode="rgb_array")
        self._start(with_bot=False)

    @classmethod
    def restore(cls, state: EnvState) -> TextWorld:
        """Reset with the state's seed and replay its actions: the same episode, exactly."""
        world = cls(state.env_id, state.seed)
        world._replay(state.actions)
        return world

    def _start(self, with_bot: bool) -> None:
        with contextlib.redirect_stdout(io.StringIO()):  # minigrid prints rejected layouts
            self.env.reset(seed=self.seed)
        self._actions: list[str] = []
        self._reward = 0.0
        self._done = False
        self._watched = with_bot
        self._bot: BabyAIBot | None = None
        self._advice = self._advise(None) if with_bot else None

    def _replay(self, actions: Iterable[str]) -> None:
        for action in actions:
            self.step(action)

    def _advise(self, last_action: int | None) -> int | None:
        """Tell the bot the action taken and get its next one. A bot that raises (it does on
        some states, e.g. once a box was opened) gives way to a fresh bot on this state."""
        if self._bot is not None:
            with contextlib.suppress(Exception):
                return self._bot.replan(last_action)
        try:
            self._bot = BabyAIBot(self.env)
            return self._bot.replan()
        except Exception:  # the fresh bot fails too: no advice here, a new try next step
            self._bot = None
            return None

    @property
    def state(self) -> EnvState:
        return EnvState(self.env_id, self.seed, tuple(self._actions))

    @property
    def mission(self) -> str:
        return self.env.unwrapped.mission

    @property
    def observation(self) -> str:
        return describe(self.env)

    @property
    def done(self) -> bool:
        return self._done

    @property
    def success(self) -> bool:
        return self._reward > 0

    def step(self, action: str) -> StepResult:
        index = _action_index(action)
        if self._done:
            raise RuntimeError(f"episode {self.state.task} is over; it takes no more actions")
        _, reward, terminated, truncated, _ = self.env.step(index)
        self._actions.append(action)
        self._reward = float(reward)
        self._done = bool(terminated or truncated)
        if self._watched and not self._done:
            self._advice = self._advise(index)
        return StepResult(reward=self._reward, done=self._done, success=self.success)

    def expert_action(self) -> str | None:
        """The bot's action here, or None when the episode is over, the bot failed or it
        proposes `done`. The first call replays the episode once with the bot watching."""
        if self._done:
            return None
        if not self._watched:
            actions = list(self._actions)
            self._start(with_bot=True)
            self._replay(actions)
        if self._advice is None or self._advice == _DONE:
            return None
        return ACTIONS[self._advice]

    def render(self) -> np.ndarray:
        """RGB picture of the whole grid, the agent and its view."""
        return self.env.render()


def render(state: EnvState) -> np.ndarray:
    """RGB picture of a state in one call (notebooks show it beside the text)."""
    return TextWorld.restore(state).render()


def expert_trajectory(state: EnvState, max_steps: int) -> tuple[list[str], bool]:
    """Let the bot play from `state` for at most `max_steps`: its actions and success."""
    world = TextWorld.restore(state)
    actions = []
    while not world.done and len(actions) < max_steps:
        action = world.expert_action()
        if action is None:
            break
        world.step(action)
        actions.append(action)
    return actions, world.success


@dataclass
class Suite:
    """Tasks the bot solves, and the drawn tasks it did not (dropped, never used)."""

    tasks: list[EnvState] = field(default_factory=list)
    dropped: list[EnvState] = field(default_factory=list)


def build_suite(
    levels: Sequence[str],
    n_tasks: int,
    seed: int,
    max_steps: int = 64,
    exclude: set[tuple[str, int]] = frozenset(),
    residue: tuple[int, int] = (0, 1),
) -> Suite:
    """Draw `n_tasks` bot-solved tasks, round-robin over `levels`, with distinct seeds drawn
    from `seed` and none of the `(env_id, seed)` tasks in `exclude`. With `residue=(r, m)`
    every task seed is congruent to r modulo m, which keeps suites of different purposes apart."""
    ids = [env_id(level) for level in levels]
    if not ids or n_tasks < 0:
        raise ValueError(f"need at least one level and n_tasks >= 0, got {levels!r}, {n_tasks}")
    offset, modulus = residue
    if not 0 <= offset < modulus:
        raise ValueError(f"residue must be (r, m) with 0 <= r < m, got {residue!r}")
    rng = np.random.default_rng(seed)
    suite, drawn = Suite(), set()
    give_up = 20 * n_tasks + 100
    with tqdm(total=n_tasks, desc="suite", leave=False, disable=n_tasks < 50) as progress:
        while len(suite.tasks) < n_tasks:
            if len(drawn) >= give_up:
                raise RuntimeError(
                    f"the bot solved only {len(suite.tasks)} of {len(drawn)} drawn tasks "
                    f"within {max_steps} steps on {ids}"
                )
            task_seed = offset + modulus * int(rng.integers(2**31 // modulus))
            task = EnvState(ids[len(suite.tasks) % len(ids)], task_seed)
            if task_seed in drawn or task.task in exclude:
                continue
            drawn.add(task_seed)
            if expert_trajectory(task, max_steps)[1]:
                suite.tasks.append(task)
                progress.update()
            else:
                suite.dropped.append(task)
    return suite
