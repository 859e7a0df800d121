"""``dvm-sidecar simulate`` end to end through the CLI entry point: table, JSON, exit codes."""

from __future__ import annotations

import json

import pytest

from sidecar.cli import main


def test_table_has_one_row_per_faulty_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--members", "3", "--threshold", "2", "--runs", "4", "--seed", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["t-of-n", "faulty", "behaviour", "runs"]
    assert [line.split()[1] for line in lines[1:]] == ["0", "1"]  # 0 to n - t by default
    assert all(line.split()[2:6] == ["mixed", "4", "4", "0"] for line in lines[1:])


def test_json_for_machines(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["simulate", "--members", "5", "--threshold", "3", "--faulty", "2", "--behaviour", "bad-share",
            "--runs", "3", "--seed", "2", "--duplicate", "0.2", "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    [row] = report["configurations"]
    assert (row["members"], row["threshold"], row["faulty"], row["behaviour"], row["runs"]) == (5, 3, 2, "bad-share", 3)
    assert row["safety_violations"] == 0 == report["safety_violations"]
    assert row["published"] == 3 and row["max_sessions"] >= 2  # two bad shares cost sessions
    assert main(argv) == 0 and json.loads(capsys.readouterr().out) == report  # the seed decides everything


@pytest.mark.parametrize(
    "extra",
    [["--threshold", "4"], ["--faulty", "x"], ["--faulty", "2-1"], ["--faulty", "9"], ["--runs", "0"],
     ["--drop", "1"]],
)
def test_settings_that_make_no_federation_exit_2(extra: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["simulate", "--members", "3", "--threshold", "2", "--runs", "1", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("dvm-sidecar simulate: ") and len(err.strip().splitlines()) == 1
