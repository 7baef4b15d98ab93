"""BabyAI as text: replay, observation text, the bot, tasks and splits by task; no model."""
