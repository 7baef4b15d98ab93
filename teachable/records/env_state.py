"""Env state: a BabyAI decision state as plain, exact data.

A task is `(env_id, seed)`; an `EnvState` adds the action prefix taken since reset. Resetting
with the seed and replaying the prefix rebuilds the world exactly (`world.text_world`), so a
state is JSON and needs no pickles. This is its one schema, read and written by every record
that holds a state.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from teachable.vocabulary import ACTIONS


class EnvState(BaseModel):
    """A BabyAI episode as plain data: reset `env_id` with `seed`, then take `actions`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    env_id: str
    seed: int = Field(ge=0)
    actions: tuple[str, ...] = ()

    def __init__(self, *fields: object, **data: object) -> None:
        """`EnvState(env_id, seed, actions)` by position as well as by keyword."""
        super().__init__(**dict(zip(("env_id", "seed", "actions"), fields, strict=False)), **data)

    @field_validator("actions")
    @classmethod
    def _valid_actions(cls, actions: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(actions) - set(ACTIONS))
        if unknown:
            raise ValueError(f"unknown action(s) {unknown}; valid actions: {', '.join(ACTIONS)}")
        return actions

    @property
    def task(self) -> tuple[str, int]:
        return (self.env_id, self.seed)

    def then(self, action: str) -> EnvState:
        """The state one action later (the action is checked, not simulated)."""
        return EnvState(self.env_id, self.seed, (*self.actions, action))
