"""teachable: find, label and train on the teachable moments of LLM agents."""

__version__ = "0.1.0"
