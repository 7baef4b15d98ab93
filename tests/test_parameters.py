"""Parameter files are validated on load, and errors name the file and the key."""

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from teachable.__main__ import main
from teachable.parameters import (
    LoraOverrides,
    LoraParameters,
    ParameterError,
    Parameters,
    Phase1BParameters,
    WarmupParameters,
    load_parameters,
    load_phase_parameters,
    parameter_table,
    section_descriptions,
)

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
    with pytest.raises(ParameterError, match="not valid YAML") as error:
        load_parameters(_write(tmp_path, "run:\n  seed: 1\nstudent: [unclosed\n"))
    assert re.search(r"\.yaml, line \d+, column \d+: not valid YAML", str(error.value))


def test_phase_overrides_are_validated(tmp_path: Path) -> None:
    path = _write(tmp_path, "phase0:\n  n_tasks: 5\n")
    params = load_phase_parameters(path, "phase0", {"n_tasks": 7})
    assert params.phase0.n_tasks == 7
    with pytest.raises(ParameterError, match=r"phase0\.max_snapshots"):
        load_phase_parameters(path, "phase0", {"max_snapshots": 0})


def test_lora_overrides_replace_set_values_and_keep_the_rest() -> None:
    lora = LoraParameters(steps=60, learning_rate=5e-4, batch_size=8, r=4)
    overrides = LoraOverrides(steps=6, batch_size=2)
    merged = overrides.over(lora)
    assert isinstance(merged, LoraParameters)
    assert (merged.steps, merged.batch_size) == (6, 2)
    assert (merged.learning_rate, merged.gradient_accumulation_steps, merged.r) == (5e-4, 1, 4)
    assert lora.steps == 60  # the shared section is left as it is
    assert LoraOverrides().over(lora) == lora


def test_phase_sections_carry_the_batch_overrides_and_pin_their_dose(tmp_path: Path) -> None:
    dose = "  dose:\n    learning_rate: 1.0e-3\n    steps: 3\n    anchor_weight: 5\n"
    params = load_parameters(_write(tmp_path, "phase2:\n  batch_size: 2\nphase5:\n" + dose))
    assert params.phase2.over(params.lora).batch_size == 2
    assert params.phase2.dose is None and params.phase1b.dose is None  # calibrated
    assert params.phase5.dose.model_dump() == {
        "learning_rate": 1e-3,
        "steps": 3,
        "anchor_weight": 5.0,
    }
    assert params.phase5.dose.lora(params.lora).steps == 3
    assert params.phase5.over(params.lora) == params.lora  # the dose is not a batch override
    with pytest.raises(ParameterError, match=r"phase5\.steps: unknown key"):
        load_parameters(_write(tmp_path, "phase5:\n  steps: 3\n"))
    with pytest.raises(ParameterError, match=r"phase5\.dose\.learning_rate"):
        load_parameters(_write(tmp_path, "phase5:\n" + dose.replace("1.0e-3", "0")))


def test_the_warm_up_and_phase_1b_override_lora_like_the_other_phases() -> None:
    lora = LoraParameters(steps=60, learning_rate=5e-4, batch_size=8, gradient_accumulation_steps=3)
    warmup = {"steps": 120, "learning_rate": 1e-3, "batch_size": 8}
    assert WarmupParameters().over(lora) == lora.model_copy(update=warmup)
    micro = {"batch_size": 1, "gradient_accumulation_steps": 1}
    assert Phase1BParameters().over(lora) == lora.model_copy(update=micro)


DOSES = [
    row["key"]
    for row in parameter_table()
    if row["key"].rsplit(".", 1)[-1] in {"steps", "learning_rate"}
]


@pytest.mark.parametrize("key", DOSES)
def test_every_step_count_and_learning_rate_is_validated_alike(tmp_path: Path, key: str) -> None:
    row = next(row for row in parameter_table() if row["key"] == key)
    expected = "int ≥ 1" if key.endswith("steps") else "float > 0"
    if key.startswith("training.grid."):  # the calibration's grid lists doses
        expected = f"list of {expected}"
    assert row["type"].removesuffix(" or null") == expected
    *sections, name = key.split(".")
    text = "".join(f"{'  ' * depth}{section}:\n" for depth, section in enumerate(sections))
    with pytest.raises(ParameterError, match=re.escape(key)):
        load_parameters(_write(tmp_path, text + f"{'  ' * len(sections)}{name}: 0\n"))


def _sections(model: type[BaseModel]) -> list[type[BaseModel]]:
    nested = [
        field.annotation
        for field in model.model_fields.values()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    ]
    return [model, *(section for child in nested for section in _sections(child))]


@pytest.mark.parametrize("section", _sections(Parameters), ids=lambda model: model.__name__)
def test_every_field_has_a_description(section: type[BaseModel]) -> None:
    missing = [name for name, field in section.model_fields.items() if not field.description]
    assert not missing, f"{section.__name__} lacks descriptions for {missing}"


def test_parameter_table_lists_every_file_key() -> None:
    rows = parameter_table()
    keys = [row["key"] for row in rows]
    assert len(keys) == len(set(keys))
    assert {"phase0.warmup.steps", "phase1.n_rollouts", "phase2.batch_size", "interactive"} <= set(
        keys
    )
    assert "source" not in keys and "phase0.warmup" not in keys
    steps = next(row for row in rows if row["key"] == "phase0.warmup.steps")
    assert steps["section"] == "phase0.warmup"
    assert (steps["type"], steps["default"]) == ("int ≥ 1", "120")
    assert {row["section"] for row in rows} <= set(section_descriptions())


def test_parameter_table_shows_a_file_s_values(tmp_path: Path) -> None:
    path = _write(tmp_path, "phase1:\n  n_rollouts: 3\nenv:\n  levels: [GoToLocal]\n")
    rows = {row["key"]: row for row in parameter_table(load_parameters(path))}
    assert (rows["phase1.n_rollouts"]["default"], rows["phase1.n_rollouts"]["value"]) == ("8", "3")
    assert rows["env.levels"]["value"] == "[GoToLocal]"
    assert "value" not in parameter_table()[0]


REFERENCE = ROOT / "docs" / "parameters.md"
GENERATED = "<!-- generated by `python -m teachable params`: do not edit below this line -->\n"


def test_the_parameter_reference_in_docs_is_the_params_output(
    capsys: pytest.CaptureFixture,
) -> None:
    """docs/parameters.md below its marker line is `python -m teachable params` verbatim:
    every key, type, default and description, and each section's description. When this
    fails, regenerate it with the command the file gives."""
    text = REFERENCE.read_text()
    assert text.count(GENERATED) == 1, "docs/parameters.md lacks its marker line"
    reference = text.split(GENERATED, 1)[1]
    assert main(["params"]) == 0
    generated = capsys.readouterr().out
    assert reference.splitlines() == generated.splitlines(), "docs/parameters.md is stale"
    keys = set(re.findall(r"^\| `([^`]+)`", reference, re.M))
    assert keys == {row["key"] for row in parameter_table()}
    for description in section_descriptions().values():
        assert description[:1].upper() + description[1:] + "." in reference


def test_params_command_prints_the_tables(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["params"]) == 0
    out = capsys.readouterr().out
    assert "#### `phase1`" in out
    assert "| `phase1.n_rollouts`" in out
    assert "rollouts with the expert's action forced at each snapshot" in out
    path = _write(tmp_path, "phase1:\n  n_rollouts: 3\n")
    assert main(["params", str(path)]) == 0
    out = capsys.readouterr().out
    assert "value in bad.yaml" in out
    row = next(line for line in out.splitlines() if line.startswith("| `phase1.n_rollouts`"))
    assert [cell.strip() for cell in row.split("|")[3:5]] == ["`8`", "`3`"]
    assert main(["params", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
