"""Sphinx extension: render committed notebook outputs; execute only notebooks that have none.

The book's notebooks are committed with their outputs. myst-nb's ``auto`` execution mode runs a
notebook when *any* of its code cells has no output, and a setup cell that only imports never
has one, so ``auto`` alone would re-execute every chapter on every build. This extension adds
each notebook that has at least one output to ``nb_execution_excludepatterns``, so that ``auto``
executes exactly the notebooks whose outputs were cleared.
"""

from __future__ import annotations

import json
from pathlib import Path

_SKIP_DIRS = {"_build", ".venv", ".cache", ".git", ".ipynb_checkpoints", "node_modules"}


def _has_outputs(path: Path) -> bool:
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = nb.get("cells", [])
    return any(cell.get("outputs") for cell in cells if cell.get("cell_type") == "code")


def _exclude_notebooks_with_outputs(app, config) -> None:
    if config.nb_execution_mode != "auto":
        return
    src = Path(app.srcdir)
    patterns = list(config.nb_execution_excludepatterns)
    for path in sorted(src.rglob("*.ipynb")):
        rel = path.relative_to(src)
        skipped = any(part in _SKIP_DIRS or part.startswith(".venv") for part in rel.parts)
        if not skipped and _has_outputs(path):
            patterns.append(rel.as_posix())
    config.nb_execution_excludepatterns = patterns


def setup(app):
    app.connect("config-inited", _exclude_notebooks_with_outputs)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
