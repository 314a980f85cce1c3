"""tools/robustness.py: a tiny chapter run under two seeds through papermill, end to end."""

import importlib.util
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("robustness", ROOT / "tools" / "robustness.py")
robustness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(robustness)


def _chapter(path: Path, tag: bool = True) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("seed = 0")
    if tag:
        params.metadata["tags"] = ["parameters"]
    nb.cells = [
        params,
        nbformat.v4.new_code_cell("from udl_jax import checks"),
        nbformat.v4.new_code_cell(
            'checks.verify([checks.at_most("seed is small", seed, 500),\n'
            '               checks.holds("always", True)])'
        ),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)
    return path


def test_parameters_cell_is_required(tmp_path):
    with pytest.raises(ValueError, match="tagged 'parameters'"):
        robustness.parameters_cell(_chapter(tmp_path / "t.ipynb", tag=False))
    assert robustness.parameters_cell(_chapter(tmp_path / "u.ipynb")) == "seed = 0"


def test_seeds_are_injected_and_failures_recorded(tmp_path):
    nb = _chapter(tmp_path / "99_toy.ipynb")
    runs = [robustness.run_one(nb, s, tmp_path, {}) for s in (0, 1000)]
    assert [r["status"] for r in runs] == ["ok", "checks failed"], runs
    assert [c["value"] for c in runs[1]["checks"]] == [1000.0, True]
    rows = list(robustness.table_rows(runs, [0, 1000]))
    assert rows == [
        ("99_toy", "seed is small", "<= 500", ["0", "1e+03 ✗"], "1/2"),
        ("99_toy", "always", "true", ["true", "true"], "2/2"),
    ]
    page = tmp_path / "page.md"
    robustness.write_page(runs, [0, 1000], page)
    text = page.read_text()
    assert "**1 of 2 checks pass under all 2 seeds**" in text
    assert "| seed is small | <= 500 | 0 | 1e+03 ✗ | 1/2 |" in text


def test_merge_keeps_other_chapters_run_under_the_same_seeds():
    def run(ch, s, v):
        return {"chapter": ch, "seed": s, "status": "ok", "wall_s": 1.0,
                "checks": [{"name": "c", "value": v, "low": None, "high": None, "passed": True}],
                "error": ""}

    previous = [run("01_a", 0, 1.0), run("01_a", 1000, 2.0), run("02_b", 0, 3.0),
                run("02_b", 1000, 4.0), run("03_gone", 0, 5.0), run("03_gone", 1000, 6.0),
                run("04_other_seeds", 0, 7.0), run("04_other_seeds", 5, 8.0)]
    new = [run("02_b", 1000, 40.0), run("02_b", 0, 30.0)]
    merged = robustness.merge_runs(previous, new, [0, 1000],
                                   {"01_a", "02_b", "04_other_seeds"})
    assert [(r["chapter"], r["seed"], r["checks"][0]["value"]) for r in merged] == [
        ("01_a", 0, 1.0), ("01_a", 1000, 2.0), ("02_b", 0, 30.0), ("02_b", 1000, 40.0)]
    assert robustness.merge_runs([], new, [0, 1000], {"02_b"}) == sorted(
        new, key=lambda r: r["seed"])


def test_ledger_lists_each_check_with_its_paper(tmp_path):
    def check(name, value, passed, **src):
        return {"name": name, "value": value, "low": 0.9, "high": None, "passed": passed, **src}

    runs = [
        {"chapter": "15_toy", "seed": s, "status": "ok", "wall_s": 1.0,
         "checks": [check("cnn accuracy", v, v >= 0.9, paper="greydanus2024mnist1d",
                          reported="94% | table 1"),
                    {"name": "identity", "value": True, "low": None, "high": None,
                     "passed": True}]}
        for s, v in ((0, 0.92), (1000, 0.95), (2000, 0.85))
    ]
    rows = list(robustness.ledger_rows(runs, [0, 1000, 2000]))
    assert rows[0] == ("15_toy", "cnn accuracy", "greydanus2024mnist1d", "94% | table 1",
                       "0.92", "0.85 to 0.95", ">= 0.9", "2/3")
    assert rows[1][2:4] == (None, None) and rows[1][5] == "–" and rows[1][7] == "3/3"
    page = tmp_path / "claims.md"
    robustness.write_ledger(runs, [0, 1000, 2000], page)
    text = page.read_text()
    assert "**2 checks, 1 of them of published claims; 1 pass under all 3 seeds" in text
    assert ("| cnn accuracy | {cite:p}`greydanus2024mnist1d` | 94% \\| table 1 | 0.92 | "
            "0.85 to 0.95 | >= 0.9 | 2/3 |") in text
    assert "| identity | – | – | true | – | true | 3/3 |" in text
