"""udl_jax.checks: every bound's edge, NaN, bad input, the failure message and the record."""

import json
import math

import numpy as np
import pytest

from udl_jax import checks


def test_bounds_are_inclusive_and_nan_fails():
    assert checks.between("x", 1.0, 1.0, 2.0).passed
    assert checks.between("x", 2.0, 1.0, 2.0).passed
    assert not checks.between("x", 2.0 + 1e-12, 1.0, 2.0).passed
    assert not checks.between("x", 1.0 - 1e-12, 1.0, 2.0).passed
    assert checks.at_most("x", -1e30, 0.0).passed and not checks.at_most("x", 0.1, 0.0).passed
    assert checks.at_least("x", 1e30, 0.0).passed and not checks.at_least("x", -0.1, 0.0).passed
    for fn, args in ((checks.between, (0.0, 1.0)), (checks.at_most, (1.0,)),
                     (checks.at_least, (0.0,))):
        assert not fn("x", math.nan, *args).passed
    assert not checks.at_most("x", np.float32(np.inf), 1.0).passed


def test_values_are_plain_floats_and_bools():
    c = checks.between("x", np.float32(0.5), np.int64(0), 1)
    assert type(c.value) is float and type(c.low) is float and c.passed
    assert checks.holds("y", np.bool_(True)) == checks.Check("y", True, None, None, True)
    assert not checks.holds("y", False).passed


def test_bad_input_names_the_argument():
    with pytest.raises(TypeError, match="value"):
        checks.between("x", np.array([1.0, 2.0]), 0, 3)
    with pytest.raises(TypeError, match="value"):
        checks.at_most("x", "0.5", 1)
    with pytest.raises(ValueError, match="low <= high"):
        checks.between("x", 1.0, 2.0, 1.0)
    with pytest.raises(ValueError, match="name"):
        checks.at_most("", 1.0, 2.0)
    with pytest.raises(TypeError, match="condition"):
        checks.holds("x", 1)  # a number is not a claim; use between/at_most
    with pytest.raises(TypeError, match="results"):
        checks.verify([])
    with pytest.raises(ValueError, match="unique"):
        checks.verify([checks.holds("a", True), checks.holds("a", True)])


def test_verify_reports_every_failure_and_records(tmp_path, monkeypatch, capsys):
    path = tmp_path / "checks.jsonl"
    monkeypatch.setenv(checks.ENV_FILE, str(path))
    results = [
        checks.between("level", 1.2, 1.0, 1.15),
        checks.at_most("fraction", 0.001, 0.01),
        checks.holds("exact", False),
    ]
    with pytest.raises(AssertionError) as err:
        checks.verify(results)
    msg = str(err.value)
    assert msg.startswith("2 of 3 checks failed")
    assert "level: 1.2, expected [1, 1.15]" in msg and "exact: false, expected true" in msg
    assert "fraction" not in msg
    # all three are recorded, failed ones too, and a second verify appends
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["name"] for r in records] == ["level", "fraction", "exact"]
    assert [r["passed"] for r in records] == [False, True, False]
    checks.verify([checks.at_least("more", 3, 2)])
    assert len(path.read_text().splitlines()) == 4
    out = capsys.readouterr().out
    assert "FAIL" in out and "all 1 checks passed" in out


def test_verify_without_record_file_prints_table(monkeypatch, capsys):
    monkeypatch.delenv(checks.ENV_FILE, raising=False)
    checks.verify([checks.between("a", 0.5, 0, 1), checks.at_most("b", 2, 3)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["check", "value", "tolerance"]
    assert lines[1].split() == ["a", "0.5", "[0,", "1]", "pass"]
    assert lines[2].split() == ["b", "2", "<=", "3", "pass"]
    assert lines[-1] == "all 2 checks passed"


def test_tolerance_text():
    assert checks.tolerance_text(None, None) == "true"
    assert checks.tolerance_text(None, 0.5) == "<= 0.5"
    assert checks.tolerance_text(0.2, None) == ">= 0.2"
    assert checks.tolerance_text(1.0, 1.15) == "[1, 1.15]"


def test_paper_and_reported_are_kept_and_recorded(tmp_path, monkeypatch):
    c = checks.at_least("cnn accuracy", 0.93, 0.9, paper="greydanus2020scaling", reported="94%")
    assert (c.paper, c.reported, c.passed) == ("greydanus2020scaling", "94%", True)
    h = checks.holds("exact", True, paper="zhang2017understanding")
    assert h.paper == "zhang2017understanding" and h.reported is None
    assert checks.between("own", 1.0, 0.0, 2.0).paper is None
    with pytest.raises(ValueError, match="paper"):
        checks.at_most("x", 1.0, 2.0, paper="two words")
    with pytest.raises(ValueError, match="reported"):
        checks.at_most("x", 1.0, 2.0, reported="94%")  # a number needs its paper
    with pytest.raises(ValueError, match="reported"):
        checks.holds("x", True, paper="k", reported="")
    path = tmp_path / "checks.jsonl"
    monkeypatch.setenv(checks.ENV_FILE, str(path))
    checks.verify([c])
    rec = json.loads(path.read_text().splitlines()[0])
    assert rec["paper"] == "greydanus2020scaling" and rec["reported"] == "94%"


def test_table_fits_the_code_column():
    long = "relative error of the analytic kernel against the empirical one at width 4096"
    results = [checks.at_most(long, 0.0123, 0.05), checks.holds("x", True)]
    table = checks.format_table(results)
    lines = table.splitlines()
    assert max(len(x) for x in lines) <= checks.TABLE_WIDTH
    assert len(lines) > 3  # the long name took two lines
    # every word of the name is there, in order, and the values sit on its last line
    assert " ".join(x.strip().split("  ")[0] for x in lines[1:-1]) == long
    assert lines[-2].rstrip().endswith("<= 0.05    pass")
    assert checks.format_table(results, width=200).count("\n") == 2
