"""Supervision texts: what a teacher's help looks like when it is put into the student's prompt.

The contextual patch test and the warm-up's in-context check use these patches; the training
formats of later phases render the same texts, so a patch means the same thing everywhere.
"""

from __future__ import annotations

from typing import Literal

from teachable.teacher import TeacherAnswer

Format = Literal["demo", "hint", "contrast"]
FORMATS: tuple[Format, ...] = ("demo", "hint", "contrast")
PLACEBO = "A teacher is watching you."


def suggestion(action: str) -> str:
    """The demo patch: the expert's action, stated plainly."""
    return f"A teacher suggests: {action}."


def patch_text(format: Format, answer: TeacherAnswer) -> str:
    """The patch of one supervision format: `demo` states the teacher's action, `hint` gives
    its diagnosis and hint (the rationale), `contrast` says why its action beats the student's."""
    if format == "demo":
        return suggestion(answer.suggested_action)
    if format == "hint":
        return f"A teacher's hint: {answer.diagnosis} {answer.hint}"
    if format == "contrast":
        return f"A teacher explains: {answer.contrast}"
    raise ValueError(f"unknown supervision format {format!r}; known: {', '.join(FORMATS)}")
