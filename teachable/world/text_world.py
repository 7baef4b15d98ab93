"""BabyAI as text: the observation a student reads, the world it acts in, and the bot expert.

A `TextWorld` is rebuilt exactly from an `EnvState` by resetting with the seed and replaying the
prefix. Expert: one `BabyAIBot` per world watches from reset, told every action taken (BabyAI's
advising mode, `replan(last_action)`; a fresh bot takes over where it raises), so its advice is
a pure function of the `EnvState` and a restored world advises exactly as the live one did.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import gymnasium as gym
import minigrid  # noqa: F401  (registers the BabyAI-* ids with gymnasium)
import numpy as np
from minigrid.core.grid import Grid
from minigrid.core.world_object import WorldObj
from minigrid.utils.baby_ai_bot import BabyAIBot

from teachable.records.env_state import EnvState
from teachable.vocabulary import ACTIONS

_DONE = 6  # MiniGrid's `done` action: the bot proposes it, the student is never offered it


_VIEW_LINES = {"forward": (0, -1), "left": (-1, 0), "right": (1, 0)}  # steps in view coords


def env_id(level: str) -> str:
    """Full gymnasium id of a BabyAI level: "GoToLocal" -> "BabyAI-GoToLocal-v0"."""
    full = level if level.startswith("BabyAI-") else f"BabyAI-{level}-v0"
    if full not in gym.registry:
        raise ValueError(f"unknown BabyAI level {level!r} (no gymnasium id {full!r})")
    return full


@dataclass(frozen=True)
class StepResult:
    reward: float
    done: bool
    success: bool


def _steps(n: int, direction: str) -> str:
    return f"{n} step{'' if n == 1 else 's'} {direction}"


def offset_words(right: int, forward: int) -> str:
    """An offset in the agent's frame as the observations word it: "1 step left and 2 steps
    forward"; an object in line gets one component."""
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
        sentences.append(f"You see {_name(obj)} {offset_words(right, forward)}.")
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
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; valid actions: {', '.join(ACTIONS)}")
        index = ACTIONS.index(action)
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


BOT_MAX_STEPS = 64  # the bot's step limit wherever it plays a whole task


def expert_decisions(
    tasks: Sequence[EnvState], max_steps: int = BOT_MAX_STEPS
) -> list[tuple[EnvState, str]]:
    """Every (state, bot action) pair along the bot's trajectories from the starts of `tasks`."""
    pairs = []
    for task in tasks:
        actions, _ = expert_trajectory(task, max_steps)
        for t, action in enumerate(actions):
            pairs.append((EnvState(task.env_id, task.seed, tuple(actions[:t])), action))
    return pairs
