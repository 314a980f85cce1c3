"""tools/api_links.py: which udl_jax functions a chapter's code uses, and its links cell."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("api_links", ROOT / "tools" / "api_links.py")
api_links = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(api_links)


def test_used_objects_follows_imports_and_skips_magics_and_constants():
    sources = [
        'import importlib.util\nif True:\n    %pip install -q "udl_jax @ git+x@main"\n',
        "from udl_jax import checks, ntk as kernels\nfrom udl_jax.train import fit\n",
        "k = kernels.empirical_ntk(f, p, x)\nc = kernels._private\nfit(m, d)\n"
        "checks.verify([checks.holds('a', True)])\nplot.use_style()  # plot not imported\n"
        "colors = checks.ENV_FILE\n",
    ]
    assert api_links.used_objects(sources) == [
        "udl_jax.checks.holds", "udl_jax.checks.verify", "udl_jax.ntk.empirical_ntk",
        "udl_jax.train.fit",
    ]


def test_links_cell_is_added_once_and_refreshed(tmp_path):
    nb = {"cells": [
        {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
         "source": ["from udl_jax import checks\n", "checks.verify([])"]},
        {"cell_type": "markdown", "metadata": {}, "source": ["## Further reading"]},
    ], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "99_toy.ipynb"
    path.write_text(json.dumps(nb))
    assert not api_links.update(path, write=False)  # stale, nothing written
    assert json.loads(path.read_text()) == nb
    assert not api_links.update(path)  # written now
    assert api_links.update(path)  # and up to date
    cells = json.loads(path.read_text())["cells"]
    assert len(cells) == 3 and cells[-1]["metadata"]["tags"] == [api_links.TAG]
    text = "".join(cells[-1]["source"])
    assert "{py:obj}`checks.verify <udl_jax.checks.verify>`" in text
    assert api_links.main([str(path), "--check"]) == 0
