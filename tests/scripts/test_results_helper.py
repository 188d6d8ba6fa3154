"""scripts/results.py (not a package: imported by path): rows are appended, the header written once."""

import csv
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "results.py"


@pytest.fixture(scope="module")
def results():
    spec = importlib.util.spec_from_file_location("bench_results", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_append_keeps_header_once_and_earlier_rows(results, tmp_path):
    path = tmp_path / "sub" / "bench.csv"
    first = [
        {"task": "two_rooms", "encoder": "joint", "recipe": "two_rooms.yaml", "seed": 0, "pair_seed": 0,
         "success": 0.88, "extra": {"final_dist_px": 4.6, "steps": 1000}},
        {"task": "two_rooms", "encoder": "joint", "seed": 1, "pair_seed": 0, "success": 0.78},
    ]  # fmt: skip
    assert results.append_rows(path, first) == 2
    before = path.read_bytes()
    results.append_rows(path, [{"task": "two_rooms", "encoder": "jepa-video", "seed": 0, "pair_seed": 1,
                                "success": 1.0, "extra": {"note": 'a "quoted", comma'}}])  # fmt: skip
    after = path.read_bytes()
    assert after.startswith(before)
    rows = list(csv.reader(after.decode().splitlines()))
    assert rows[0] == list(results.COLUMNS)
    assert sum(r == list(results.COLUMNS) for r in rows) == 1
    assert len(rows) == 4
    table = [dict(zip(rows[0], r)) for r in rows[1:]]
    assert table[0]["extra"] == '{"final_dist_px":4.6,"steps":1000}'
    assert table[1]["recipe"] == "" and table[1]["success"] == "0.78"
    assert table[2]["extra"] == '{"note":"a \\"quoted\\", comma"}'
    for row in table:
        assert "cores" in row["machine"] and ("GPU" in row["machine"])
        assert row["commit"]  # this test runs in the project's git checkout
        assert len(row["date"]) == 10


def test_rejects_unknown_columns_and_other_headers(results, tmp_path):
    path = tmp_path / "bench.csv"
    with pytest.raises(ValueError, match="unknown column"):
        results.append_rows(path, [{"task": "t", "succes": 1.0}])
    assert not path.exists()
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="header"):
        results.append_rows(path, [{"task": "t"}])
    assert path.read_text() == "a,b\n1,2\n"


def test_commit_outside_git_is_empty(results, tmp_path):
    assert results.commit(tmp_path) == ""
