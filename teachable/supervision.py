"""Supervision texts: what a teacher's help looks like when it is put into the student's prompt.

The contextual patch test and the warm-up's in-context check use these patches; the training
formats of later phases render the same texts, so a patch means the same thing everywhere.
"""

PLACEBO = "A teacher is watching you."


def suggestion(action: str) -> str:
    """The demo patch: the expert's action, stated plainly."""
    return f"A teacher suggests: {action}."
