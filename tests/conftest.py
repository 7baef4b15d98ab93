"""The notebooks under tests/notebooks are fixtures of the runner's tests, not tests: nbval
must not collect them. tests/browser is the real-browser suite, which needs Chromium and
Playwright: `make test-browser` runs it (`pytest tests/browser`), `make test` leaves it out."""

collect_ignore = ["notebooks", "browser"]
