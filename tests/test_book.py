"""The book's own conventions, checked on the files as committed."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _config_value(key):
    """Read `repository.<key>` from _config.yml without a YAML dependency."""
    text = (ROOT / "_config.yml").read_text()
    block = re.search(r"^repository:\n((?:[ \t]+.*\n)+)", text, re.M).group(1)
    return re.search(rf"^\s+{key}:\s*(\S+)", block, re.M).group(1).strip("\"'")


def _code_cells(nb_path):
    cells = json.loads(nb_path.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def test_there_are_chapters():
    assert len(NOTEBOOKS) >= 2


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_install_cell_reads_the_configured_repository(nb):
    url, branch = _config_value("url"), _config_value("branch")
    first = _code_cells(nb)[0]
    assert 'importlib.util.find_spec("udl_jax") is None' in first, "install only if missing"
    found = re.findall(r"git\+(\S+?)@(\w[\w.-]*)", first)
    assert found == [(url, branch)], (
        f"{nb.name}: the install cell installs from {found}, but _config.yml says "
        f"{url}@{branch}; change the notebook's first code cell"
    )
    assert "jax" not in first.replace("udl_jax", ""), "the install cell must not pin or upgrade JAX"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_chapter_shape(nb):
    toc = (ROOT / "_toc.yml").read_text()
    assert f"notebooks/{nb.stem}" in toc, f"{nb.name} is not in _toc.yml"
    code = _code_cells(nb)
    assert any("udl_jax" in c for c in code[1:3]), "imports udl_jax right after the install cell"
    assert "checks.verify(" in code[-1], "the last code cell is the check cell (checks.verify)"
    cells = json.loads(nb.read_text())["cells"]
    text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    assert re.search(r"\{cite:[pt]\}", text), "the claim cites its source"
    assert text.count("{dropdown} Solution") >= 3, "at least three exercises with solutions"
    for heading in ("## Summary", "## Exercises", "## Further reading"):
        assert heading in text
    outputs = [o for c in cells if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert outputs, f"{nb.name} is committed without outputs"
    assert not [o for o in outputs if o.get("output_type") == "error"]


def test_every_citation_key_exists():
    bib = (ROOT / "book" / "references.bib").read_text()
    keys = set(re.findall(r"@\w+\{([^,]+),", bib))
    pages = [*NOTEBOOKS, *(ROOT / "book").glob("*.md")]
    for page in pages:
        for group in re.findall(r"\{cite:[pt]\}`([^`]+)`", page.read_text()):
            for k in group.split(","):
                assert k.strip() in keys, f"{page.name} cites unknown key {k.strip()!r}"


def _code_cell_objects(nb_path):
    return [c for c in json.loads(nb_path.read_text())["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_and_seeded_randomness(nb):
    """`make robustness` reruns each chapter with another `seed` (papermill): the chapter needs
    one cell tagged `parameters` right after the install cell, and every random choice its code
    makes must come from `seed`, not from a literal."""
    cells = _code_cell_objects(nb)
    tagged = [i for i, c in enumerate(cells) if "parameters" in c["metadata"].get("tags", [])]
    assert tagged == [1], f"{nb.name}: the second code cell, and only it, is tagged 'parameters'"
    params = "".join(cells[1]["source"])
    assert re.search(r"^seed = \d+", params, re.M), f"{nb.name}: the parameters cell sets seed"
    for line in params.splitlines():
        assert not line.strip() or line.startswith("#") or re.match(r"^\w+ = ", line), (
            f"{nb.name}: the parameters cell holds only plain assignments, got {line!r}"
        )
    literal = re.compile(
        r"(random\.key|PRNGKey|nnx\.Rngs|default_rng|random_state=)\(?\s*\d+\s*\)?"
    )
    for c in cells[2:]:
        src = "".join(c["source"])
        assert not literal.search(src), (
            f"{nb.name}: a literal seed in executed code ({literal.search(src).group(0)}); "
            "derive it from `seed`"
        )


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_output_checks_are_tags_not_comments(nb):
    """nbval compares outputs only of cells tagged `nbval-check-output` (machine-independent
    output); readers never see test markers, and the check cell is not output-checked."""
    cells = _code_cell_objects(nb)
    for c in cells:
        assert "NBVAL_" not in "".join(c["source"]), f"{nb.name}: use nbval's cell tags"
    assert "nbval-check-output" not in cells[-1]["metadata"].get("tags", []), (
        f"{nb.name}: the check cell prints measured values; it must not be output-checked"
    )
