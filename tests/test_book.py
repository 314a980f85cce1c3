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
    assert re.search(r"^\s*assert\b", code[-1], re.M), "the last code cell is the check cell"
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
