"""Running the phases: the papermill runner, provenance and the run checks."""
