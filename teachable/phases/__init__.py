"""One module per phase of the plan, each with its entry points."""
