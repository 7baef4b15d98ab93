"""The workbench's vocabulary, each name spelled once: the student's actions, the supervision
formats, the U methods, the quadrants and the selection methods. Everything else imports these;
this module imports nothing of the package."""

from __future__ import annotations

from typing import Literal, get_args

# The student's valid actions; MiniGrid's `done` is never offered.
ACTIONS: tuple[str, ...] = ("turn left", "turn right", "go forward", "pick up", "drop", "toggle")

Format = Literal["demo", "hint", "contrast"]
FORMATS: tuple[Format, ...] = get_args(Format)

UMethod = Literal["entropy", "margin", "top1"]
U_METHODS: tuple[UMethod, ...] = get_args(UMethod)

Quadrant = Literal["Q1_highU_highL", "Q2_highU_lowL", "Q3_lowU_lowL", "Q4_lowU_highL"]
QUADRANTS: tuple[Quadrant, ...] = get_args(Quadrant)

SelectionMethod = Literal["random", "entropy", "predictor", "oracle", "learnability"]
SELECTION_METHODS: tuple[SelectionMethod, ...] = get_args(SelectionMethod)
