"""Parameter files are validated on load, and errors name the file and the key."""

from pathlib import Path

import pytest

from teachable.parameters import ParameterError, load_parameters, load_phase_parameters

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "parameters").glob("*.yaml"))


def test_every_documented_parameter_set_ships() -> None:
    assert {"smoke", "pilot", "pilot_api", "full"} <= {path.stem for path in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.stem)
def test_shipped_parameter_files_load(path: Path) -> None:
    params = load_parameters(path)
    assert params.run_name == path.stem
    assert params.run_dir == (ROOT / "runs" / path.stem).resolve()


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("student:\n  modle: tiny\n", "student.modle: unknown key"),
        ("phase0:\n  n_tasks: many\n", "phase0.n_tasks"),
        ("phase0:\n  n_tasks: -3\n", "phase0.n_tasks"),
        ("phase0:\n  warmup:\n    steps: 0\n", "phase0.warmup.steps"),
        ("env:\n  levels: [GoToLocal, GoToMoon]\n", "env.levels"),
        ("student:\n  dtype: float8\n", "student.dtype"),
        ("bogus_section: {}\n", "bogus_section: unknown key"),
        (
            "env:\n  levels: [GoToObj, GoToLocal]\nphase3:\n  retention_levels: [GoToObj]\n",
            "phase3.retention_levels must lie outside env.levels; both hold GoToObj",
        ),
    ],
)
def test_bad_values_name_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ParameterError) as error:
        load_parameters(path)
    assert str(path) in str(error.value)
    assert key in str(error.value)


def test_unknown_level_lists_the_offender(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="GoToMoon"):
        load_parameters(_write(tmp_path, "env:\n  levels: [GoToMoon]\n"))


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="does not exist"):
        load_parameters(tmp_path / "nope.yaml")
    with pytest.raises(ParameterError, match="not valid YAML"):
        load_parameters(_write(tmp_path, "run: [unclosed\n"))


def test_phase_overrides_are_validated(tmp_path: Path) -> None:
    path = _write(tmp_path, "phase0:\n  n_tasks: 5\n")
    params = load_phase_parameters(path, "phase0", {"n_tasks": 7})
    assert params.phase0.n_tasks == 7
    with pytest.raises(ParameterError, match=r"phase0\.max_snapshots"):
        load_phase_parameters(path, "phase0", {"max_snapshots": 0})
