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


COLUMN_PX = 676  # udl_jax.plot.COLUMN_PX: the site's text column at a 1280 px window
CODE_COLUMNS = 78  # what a code block shows without scrolling (notebooks/ruff.toml)


def _png_width(b64):
    import base64
    import struct

    return struct.unpack(">I", base64.b64decode(b64)[16:20])[0]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_figures_fit_the_column_with_caption_and_alt_text(nb):
    """Every figure is at most a column wide (not shrunk, so its text stays readable), and its
    cell gives the site a caption and alt text (myst-nb cell metadata `mystnb.figure.caption`,
    `mystnb.image.alt`) and a unique name to link to."""
    names = []
    for i, c in enumerate(_code_cell_objects(nb)):
        pngs = [o["data"]["image/png"] for o in c.get("outputs", []) if "image/png" in o.get(
            "data", {})]
        if not pngs:
            continue
        where = f"{nb.name}, code cell {i}"
        for png in pngs:
            width = _png_width(png)
            assert width <= COLUMN_PX, f"{where}: figure {width} px wide > {COLUMN_PX}; " \
                "draw it with plot.subplots (stack panels) instead of a wide figsize"
        meta = c["metadata"].get("mystnb", {})
        caption = meta.get("figure", {}).get("caption", "")
        alt = meta.get("image", {}).get("alt", "")
        assert len(caption) >= 20, f"{where}: mystnb.figure.caption missing or too short"
        assert len(alt) >= 20, f"{where}: mystnb.image.alt missing or too short"
        names.append(meta.get("figure", {}).get("name", ""))
        assert names[-1].startswith("fig-"), f"{where}: mystnb.figure.name 'fig-...' missing"
    assert len(set(names)) == len(names), f"{nb.name}: figure names repeat: {names}"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_code_fits_the_column(nb):
    """Code cells and the code blocks in solutions fit a code block without sideways scrolling
    (`ruff format` keeps code cells at 78 columns; comments and strings are wrapped by hand)."""
    cells = json.loads(nb.read_text())["cells"]
    for i, c in enumerate(cells):
        src = "".join(c["source"])
        if c["cell_type"] == "code":
            lines = src.splitlines()
        else:
            lines = [ln for block in re.findall(r"```python\n(.*?)```", src, re.S)
                     for ln in block.splitlines()]
        long = [ln for ln in lines if len(ln) > CODE_COLUMNS and "%pip install" not in ln]
        assert not long, f"{nb.name}, cell {i}: {len(long)} lines over {CODE_COLUMNS}: {long[0]}"


SCREEN_LINES = 50  # a code cell a reader sees whole, at 78 columns


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_code_cells_fit_a_screen(nb):
    """No code cell is longer than a screen: longer computation belongs in a tested package
    function, and a longer experiment reads better as steps with prose between them. The check
    cell is counted up to its `checks.verify(` call (one entry per claim after it)."""
    code = _code_cells(nb)
    for i, src in enumerate(code):
        if i == len(code) - 1:
            src = src.split("checks.verify(")[0]
        n = len(src.rstrip().splitlines())
        first = src.splitlines()[0] if src.strip() else ""
        assert n <= SCREEN_LINES, f"{nb.name}, code cell {i} ({first!r}): {n} lines > screen"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_exercises_are_numbered_each_with_its_solution(nb):
    """One format in every chapter: under `## Exercises`, a markdown cell opening with
    `**Exercise k.**`, then the next cell `:::{dropdown} Solution k`, for k = 1, 2, ..., n >= 3."""
    cells = json.loads(nb.read_text())["cells"]
    md = ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
    start = next(i for i, s in enumerate(md) if re.search(r"^## Exercises\s*$", s, re.M))
    end = next(i for i, s in enumerate(md) if "## Further reading" in s)
    seq = []
    for s in md[start:end + 1]:
        for m in re.finditer(r"^\*\*Exercise (\d+)\.\*\*|^:::\{dropdown\} Solution (\d+)\s*$",
                             s, re.M):
            seq.append(("E", int(m.group(1))) if m.group(1) else ("S", int(m.group(2))))
    n = len(seq) // 2
    assert n >= 3, f"{nb.name}: at least three exercises with solutions, found {seq}"
    expected = [x for k in range(1, n + 1) for x in (("E", k), ("S", k))]
    assert seq == expected, f"{nb.name}: exercises and solutions out of order: {seq}"
    for s in md[start + 1:end]:
        if s.startswith("**Exercise"):
            assert ":::{dropdown}" not in s, f"{nb.name}: the solution goes in the next cell"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_checks_name_the_papers_they_reproduce(nb):
    """The claims ledger lists each check with its paper: `paper=` keys exist in the
    bibliography, and every chapter checks at least one published claim."""
    bib = (ROOT / "book" / "references.bib").read_text()
    keys = set(re.findall(r"@\w+\{([^,]+),", bib))
    check_cell = _code_cells(nb)[-1]
    papers = re.findall(r"paper=\"([^\"]+)\"", check_cell)
    assert papers, f"{nb.name}: no check says which paper it reproduces (paper=...)"
    unknown = sorted(set(papers) - keys)
    assert not unknown, f"{nb.name}: paper= keys not in references.bib: {unknown}"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_chapter_links_the_api_it_uses(nb):
    """The last cell lists, with links into the API page, every udl_jax function the chapter
    calls; `python tools/api_links.py` regenerates it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("api_links", ROOT / "tools" / "api_links.py")
    api_links = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(api_links)
    assert api_links.update(nb, write=False), (
        f"{nb.name}: its api-links cell is out of date; run `python tools/api_links.py`"
    )


def test_robustness_record_and_ledger_cover_every_chapter():
    """book/robustness.json (written by tools/robustness.py, read by the robustness page and the
    claims ledger) has every chapter under the same seeds, and both pages are in the TOC."""
    runs = json.loads((ROOT / "book" / "robustness.json").read_text())
    seeds = {}
    for r in runs:
        seeds.setdefault(r["chapter"], set()).add(r["seed"])
    missing = sorted({nb.stem for nb in NOTEBOOKS} - set(seeds))
    assert not missing, f"not in book/robustness.json: {missing}; run tools/robustness.py on them"
    assert len({frozenset(s) for s in seeds.values()}) == 1, f"different seeds: {seeds}"
    toc = (ROOT / "_toc.yml").read_text()
    assert "book/claims" in toc and "book/robustness" in toc
    ledger = (ROOT / "book" / "claims.md").read_text()
    for nb in NOTEBOOKS:
        assert f"notebooks/{nb.stem}`" in ledger, f"{nb.stem} missing from book/claims.md"
