"""`python -m teachable --version` prints the installed package's version and exits 0."""

import subprocess
import sys
from importlib.metadata import version


def test_version_prints_the_package_version_and_exits_0():
    result = subprocess.run(
        [sys.executable, "-m", "teachable", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"teachable {version('teachable')}"
