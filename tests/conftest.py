"""The notebooks under tests/notebooks are fixtures of the runner's tests, not tests: nbval
must not collect them."""

collect_ignore = ["notebooks"]
