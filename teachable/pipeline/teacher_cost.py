"""What a chat-model teacher is expected to cost: its answers, their tokens and their price.

The answers are the phases' units times the answers each asks (`pipeline.workload`): one per
snapshot Phase 1 labels, one per candidate of a Phase 5 method that buys the CPT, and, when the
teacher model plays Phase 0's experiment B, one per step (at most `phase0.expert.max_steps`
per episode). Tokens per answer are the run's own, from the usage Phase 1 recorded in
`labeling.json` when it asked the model, else the stated defaults. Prices are
`teacher.price_per_1k_input` and `teacher.price_per_1k_output`. Answers in the teacher's
on-disk cache cost nothing, so the figures are an upper bound for a run asked before.
"""

from __future__ import annotations

from dataclasses import dataclass

from teachable.parameters import TeacherParameters
from teachable.records.layout import RunLayout
from teachable.records.store import BadFile, read_json

# one answer of the chat-model teacher: the system text (about 130 tokens), the mission, the
# observation and the valid actions, and the answer schema in; a JSON answer of an action and
# three short texts out. An estimate from the prompt's length, not a measurement.
DEFAULT_PROMPT_TOKENS = 350
DEFAULT_COMPLETION_TOKENS = 100


@dataclass(frozen=True)
class TeacherCost:
    """Expected answers, tokens and US dollars, and where the tokens per answer come from."""

    answers: int
    prompt_tokens: int
    completion_tokens: int
    usd: float
    basis: str

    def line(self) -> str:
        """`up to 52 answers, ~18,200 prompt + 5,200 completion tokens, ~$0.0059 (...)`."""
        return (
            f"up to {self.answers:,} answers, ~{self.prompt_tokens:,} prompt + "
            f"{self.completion_tokens:,} completion tokens, ~${self.usd:.4f} ({self.basis})"
        )


def tokens_per_answer(run: RunLayout) -> tuple[float, float, str]:
    """Prompt and completion tokens per request of the run's own Phase 1 usage, else the
    defaults; with what they rest on."""
    try:
        usage = read_json(run.phase1.record).get("teacher_usage", {})
    except (BadFile, FileNotFoundError, AttributeError):
        usage = {}
    requests = usage.get("requests") or 0
    if requests > 0:
        prompt, completion = (
            usage["prompt_tokens"] / requests,
            usage["completion_tokens"] / requests,
        )
        return prompt, completion, f"tokens per answer from this run's {requests} requests"
    default = f"{DEFAULT_PROMPT_TOKENS} + {DEFAULT_COMPLETION_TOKENS} tokens per answer, a default"
    return DEFAULT_PROMPT_TOKENS, DEFAULT_COMPLETION_TOKENS, default


def expected_cost(teacher: TeacherParameters, answers: int, run: RunLayout) -> TeacherCost:
    """The cost of `answers` answers of the teacher at its prices."""
    prompt, completion, basis = tokens_per_answer(run)
    prompt_tokens, completion_tokens = round(answers * prompt), round(answers * completion)
    usd = (
        prompt_tokens * teacher.price_per_1k_input + completion_tokens * teacher.price_per_1k_output
    ) / 1000
    prices = f"${teacher.price_per_1k_input:g} + ${teacher.price_per_1k_output:g} per 1k tokens"
    return TeacherCost(answers, prompt_tokens, completion_tokens, usd, f"{basis}; {prices}")
