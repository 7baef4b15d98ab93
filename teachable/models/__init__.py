"""The student and what it does: batched action scoring, rollouts, LoRA training; the teachers."""
