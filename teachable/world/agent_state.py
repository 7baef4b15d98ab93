"""The agent's state in a world: where it is, where it faces, what it carries and the cell in
front of it (so that opening a door counts as a change), and the states an episode passes
through when its actions are replayed from its start; stuckness is read from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from teachable.records.env_state import EnvState
from teachable.world.text_world import TextWorld


@dataclass(frozen=True)
class AgentState:
    """Where the agent is, where it faces, what it carries and the cell in front of it
    (minigrid's (type, color, state) encodings; None for nothing)."""

    position: tuple[int, int]
    direction: int
    carrying: tuple[int, int, int] | None
    ahead: tuple[int, int, int] | None


def agent_state(world: TextWorld) -> AgentState:
    """The world's agent state now."""
    env = world.env.unwrapped
    front = env.grid.get(*env.front_pos)
    return AgentState(
        position=(int(env.agent_pos[0]), int(env.agent_pos[1])),
        direction=int(env.agent_dir),
        carrying=None if env.carrying is None else tuple(env.carrying.encode()),
        ahead=None if front is None else tuple(front.encode()),
    )


def agent_trace(start: EnvState, actions: Sequence[str]) -> tuple[list[AgentState], bool]:
    """The agent states of an episode, the start included, and whether the level ended."""
    world = TextWorld.restore(start)
    states = [agent_state(world)]
    for action in actions:
        world.step(action)
        states.append(agent_state(world))
    return states, world.done
