"""Artifact files: atomic JSON, and JSONL logs that survive a kill mid-write."""

import json

import pytest

from teachable.records.store import BadFile, append_jsonl, read_json, read_jsonl, write_json


def test_write_json_round_trips_and_creates_folders(tmp_path):
    path = tmp_path / "a" / "b" / "thing.json"
    write_json(path, {"x": [1, 2.5, "three"], "y": None})
    assert read_json(path) == {"x": [1, 2.5, "three"], "y": None}
    assert [p.name for p in path.parent.iterdir()] == ["thing.json"]


def test_failed_write_json_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "thing.json"
    write_json(path, {"version": 1})
    with pytest.raises(TypeError):
        write_json(path, {"version": 2, "bad": object()})
    assert read_json(path) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["thing.json"]


def test_jsonl_rows_round_trip_in_order(tmp_path):
    path = tmp_path / "log" / "rows.jsonl"
    assert read_jsonl(path) == []
    rows = [{"i": i, "text": f"row {i}"} for i in range(5)]
    for row in rows:
        append_jsonl(path, row)
    assert read_jsonl(path) == rows
    assert path.read_text().count("\n") == 5


def test_truncated_last_line_is_ignored_then_cut_by_the_next_append(tmp_path):
    path = tmp_path / "rows.jsonl"
    append_jsonl(path, {"i": 0})
    append_jsonl(path, {"i": 1})
    with path.open("a") as file:
        file.write('{"i": 2, "te')
    assert read_jsonl(path) == [{"i": 0}, {"i": 1}]
    append_jsonl(path, {"i": 3})
    assert read_jsonl(path) == [{"i": 0}, {"i": 1}, {"i": 3}]
    assert [json.loads(line) for line in path.read_text().splitlines()] == read_jsonl(path)


def test_a_whole_row_without_its_newline_counts_as_unwritten(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"i": 0}\n{"i": 1}')
    assert read_jsonl(path) == [{"i": 0}]


def test_corrupt_row_in_the_middle_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"i": 0}\nnot json\n{"i": 2}\n')
    with pytest.raises(ValueError, match=r"rows\.jsonl, line 2"):
        read_jsonl(path)


def test_a_json_file_cut_short_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "snapshots.json"
    write_json(path, [{"id": "a", "actions": ["go forward"]}, {"id": "b"}])
    path.write_text(path.read_text()[:40])
    with pytest.raises(BadFile, match=r"snapshots\.json is not valid JSON \(line \d+, column \d+"):
        read_json(path)
    path.write_bytes(b"\xff\xfe[]")
    with pytest.raises(BadFile, match=r"snapshots\.json is not valid JSON \(not UTF-8"):
        read_json(path)
