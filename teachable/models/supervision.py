"""Supervision: what a teacher's help looks like in the student's prompt, and as training data.

Each supervision format is a `SupervisionFormat` registered under its name (`FORMATS` of the
vocabulary): its patch text, built from the teacher-answer fields its template names, and
whether its training prompt carries that patch. The contextual patch test and the warm-up's
in-context check put these patches into the prompt; the training formats render the same
texts, so a format means the same thing when it is patched in and when it is trained on. Every
format trains the student to answer the expert's action at the snapshot: `demo` is the plain
state prompt, `hint` adds the teacher's diagnosis and hint, `contrast` adds why the expert's
action beats the student's. The loss covers the action tokens only (`models.lora`).
Evaluation prompts carry no patch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from string import Formatter

from teachable.models.lora import SFTExample
from teachable.models.rollouts import prompt_for
from teachable.records.labeled import LabeledSnapshot, TeacherAnswer
from teachable.vocabulary import Format
from teachable.world.text_world import TextWorld, expert_trajectory


@dataclass(frozen=True)
class SupervisionFormat:
    """A supervision format: its patch `template`, filled from the teacher-answer fields it
    names, and whether its training prompt carries the patch (`patched_in_training`; a patch
    that only states the target action would hand the student its answer). A format that
    `follows_recovery` trains, with `demo_steps` > 1, on the expert's recovery trajectory from
    the snapshot, one example per state; the others' texts speak of the snapshot alone."""

    name: Format
    template: str
    patched_in_training: bool = True
    follows_recovery: bool = False

    @property
    def reads(self) -> tuple[str, ...]:
        """The teacher-answer fields the patch is built from, in the template's order."""
        return tuple(field for _, field, _, _ in Formatter().parse(self.template) if field)

    def fill(self, **fields: str) -> str:
        """The patch with the given texts in place of the fields it reads."""
        return self.template.format(**fields)

    def patch(self, answer: TeacherAnswer) -> str:
        """The patch of this format for one teacher answer."""
        return self.fill(**{field: getattr(answer, field) for field in self.reads})

    def training_patch(self, row: LabeledSnapshot) -> str | None:
        """The text the format adds to the training prompt of `row`, if any."""
        if not self.patched_in_training:
            return None
        if row.teacher is None:
            raise ValueError(
                f"snapshot {row.id}: the {self.name} format needs the teacher's answer"
            )
        return self.patch(row.teacher)


SUPERVISION_FORMATS: dict[str, SupervisionFormat] = {}


def register(format: SupervisionFormat) -> SupervisionFormat:
    """Make `format` known by its name to every phase that trains or patches with formats."""
    SUPERVISION_FORMATS[format.name] = format
    return format


register(
    SupervisionFormat(
        "demo", "A teacher suggests: {suggested_action}.", False, follows_recovery=True
    )
)
register(SupervisionFormat("hint", "A teacher's hint: {diagnosis} {hint}"))
register(SupervisionFormat("contrast", "A teacher explains: {contrast}"))


def supervision_format(name: str) -> SupervisionFormat:
    """The registered format called `name`."""
    if name not in SUPERVISION_FORMATS:
        known = ", ".join(SUPERVISION_FORMATS)
        raise ValueError(f"unknown supervision format {name!r}; known: {known}")
    return SUPERVISION_FORMATS[name]


def sft_example(row: LabeledSnapshot, format: Format, history: int = 0) -> SFTExample:
    """The snapshot's state prompt with the format's text, and the expert's action as target."""
    patch = supervision_format(format).training_patch(row)
    return SFTExample(prompt_for(TextWorld.restore(row.state), history, patch), row.expert_action)


def recovery_examples(row: LabeledSnapshot, steps: int, history: int = 0) -> list[SFTExample]:
    """The expert's first `steps` actions from the snapshot, each at its own state as a plain
    state prompt (fewer where the bot finishes sooner); the first is the snapshot's own."""
    actions, _ = expert_trajectory(row.state, steps)
    states = [row.state]
    for action in actions[:-1]:
        states.append(states[-1].then(action))
    return [
        SFTExample(prompt_for(TextWorld.restore(state), history), action)
        for state, action in zip(states, actions, strict=True)
    ]


def trains_on_recovery(format: Format, demo_steps: int) -> bool:
    """Whether `format` at `demo_steps` trains on the expert's recovery trajectory, one example
    per state, rather than on the snapshot alone."""
    return demo_steps > 1 and supervision_format(format).follows_recovery


def sft_examples(
    rows: Sequence[LabeledSnapshot],
    format: Format,
    history: int = 0,
    demo_steps: int = 1,
    targets: Sequence[str] | None = None,
) -> list[SFTExample]:
    """The training examples of `rows` in `format`: one per snapshot, or the recovery
    trajectory's `demo_steps` per snapshot for a format that follows it. `targets`, when given,
    replace the examples' actions one by one (a control's wrong targets)."""
    if trains_on_recovery(format, demo_steps):
        examples = [e for row in rows for e in recovery_examples(row, demo_steps, history)]
    else:
        examples = [sft_example(row, format, history) for row in rows]
    if targets is None:
        return examples
    if len(targets) != len(examples):
        raise ValueError(f"{len(targets)} targets for {len(examples)} training examples")
    return [replace(e, target=t) for e, t in zip(examples, targets, strict=True)]


def sft_targets(rows: Sequence[LabeledSnapshot], format: Format, demo_steps: int = 1) -> list[str]:
    """The actions the examples of `sft_examples` train toward, in their order, without
    rendering a prompt."""
    if trains_on_recovery(format, demo_steps):
        return [action for row in rows for action in expert_trajectory(row.state, demo_steps)[0]]
    return [row.expert_action for row in rows]


PLACEBO = "A teacher is watching you."


def suggestion(action: str) -> str:
    """The demo patch: the expert's action, stated plainly."""
    return supervision_format("demo").fill(suggested_action=action)


def patch_text(format: Format, answer: TeacherAnswer) -> str:
    """The patch of one supervision format for one teacher answer."""
    return supervision_format(format).patch(answer)


def teacher_texts(answer: TeacherAnswer) -> dict[str, str]:
    """The texts of the teacher's answer that the formats read besides its suggested action,
    by field, in the formats' order."""
    fields = dict.fromkeys(field for f in SUPERVISION_FORMATS.values() for field in f.reads)
    return {field: getattr(answer, field) for field in fields if field != "suggested_action"}
