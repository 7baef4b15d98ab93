"""Supervision: what a teacher's help looks like in the student's prompt, and as training data.

The contextual patch test and the warm-up's in-context check put these patches into the prompt;
the training formats render the same texts, so a format means the same thing when it is patched
in and when it is trained on. Every format trains the student to answer the expert's action at
the snapshot: `demo` is the plain state prompt, `hint` adds the teacher's diagnosis and hint,
`contrast` adds why the expert's action beats the student's. The loss covers the action tokens
only (`models.lora`). Evaluation prompts carry no patch.
"""

from __future__ import annotations

from collections.abc import Sequence

from teachable.models.lora import SFTExample
from teachable.models.rollouts import prompt_for
from teachable.records.labeled import LabeledSnapshot, TeacherAnswer
from teachable.vocabulary import FORMATS, Format
from teachable.world.text_world import TextWorld


def format_patch(row: LabeledSnapshot, format: Format) -> str | None:
    """The text a format adds to the training prompt: none for `demo`, the teacher's texts
    for `hint` and `contrast`."""
    if format not in FORMATS:
        raise ValueError(f"unknown supervision format {format!r}; known: {', '.join(FORMATS)}")
    if format == "demo":
        return None
    if row.teacher is None:
        raise ValueError(f"snapshot {row.id}: the {format} format needs the teacher's answer")
    return patch_text(format, row.teacher)


def sft_example(row: LabeledSnapshot, format: Format, history: int = 0) -> SFTExample:
    """The snapshot's state prompt with the format's text, and the expert's action as target."""
    prompt = prompt_for(TextWorld.restore(row.state), history, format_patch(row, format))
    return SFTExample(prompt, row.expert_action)


def sft_examples(
    rows: Sequence[LabeledSnapshot], format: Format, history: int = 0
) -> list[SFTExample]:
    return [sft_example(row, format, history) for row in rows]


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
