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
