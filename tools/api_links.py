"""Link each chapter to the API entries of the `udl_jax` functions it calls.

Every chapter ends with a short markdown cell (tagged ``api-links``) listing the package's
functions and classes its code cells use, each a cross-reference into the API page
(``book/api.md``), so a reader can go from a call in a chapter to its docstring, equations and
source. The list is computed from the code (``ast``), never written by hand:

    python tools/api_links.py            # update every chapter's cell
    python tools/api_links.py --check    # exit 1 if any chapter's cell is out of date

``tests/test_book.py`` runs the check.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TAG = "api-links"
HEADING = "### The `udl_jax` functions used here"


def _parsable(source: str) -> str:
    """Notebook code with IPython magics (``%pip``, ``!ls``) replaced by ``pass``."""
    lines = []
    for line in source.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(("%", "!")):
            line = line[: len(line) - len(stripped)] + "pass"
        lines.append(line)
    return "\n".join(lines)


def used_objects(sources: list[str]) -> list[str]:
    """Fully qualified names of the public `udl_jax` functions and classes the code uses.

    Args:
      sources: the code cells' sources, in order.

    Returns:
      Sorted names such as ``"udl_jax.ntk.empirical_ntk"``; only callables defined in (or
      re-exported by) a `udl_jax` module, so constants and modules themselves are left out.
    """
    trees = [ast.parse(_parsable(s)) for s in sources]
    modules: dict[str, str] = {}  # local alias -> udl_jax module path
    direct: dict[str, str] = {}  # local name -> "udl_jax.module.name"
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and (
                node.module == "udl_jax" or node.module.startswith("udl_jax.")
            ):
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    target = modules if _is_module(full) else direct
                    target[a.asname or a.name] = full
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("udl_jax.") and a.asname:
                        modules[a.asname] = a.name
    found: set[str] = set(direct.values())
    for tree in trees:
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in modules and not node.attr.startswith("_")):
                found.add(f"{modules[node.value.id]}.{node.attr}")
    return sorted(name for name in found if _is_public_callable(name))


def _is_module(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def _is_public_callable(name: str) -> bool:
    module, _, attr = name.rpartition(".")
    obj = getattr(importlib.import_module(module), attr, None)
    return callable(obj) and not attr.startswith("_")


def links_cell_source(names: list[str]) -> str:
    """The markdown of the cell: a heading and one cross-reference per name."""
    refs = [f"{{py:obj}}`{n.removeprefix('udl_jax.')} <{n}>`" for n in names]
    return (
        f"{HEADING}\n\n"
        "Each name links to its entry in the package reference, {doc}`../book/api`, with its\n"
        "docstring and source:\n" + ",\n".join(refs) + ".\n"
    )


def update(nb_path: Path, write: bool = True) -> bool:
    """Insert or refresh the chapter's ``api-links`` cell (the last cell).

    Returns:
      True if the notebook was already up to date.
    """
    nb = json.loads(nb_path.read_text())
    cells = nb["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    source = links_cell_source(used_objects(code))
    tagged = [i for i, c in enumerate(cells) if TAG in c.get("metadata", {}).get("tags", [])]
    if tagged == [len(cells) - 1] and "".join(cells[-1]["source"]) == source:
        return True
    if not write:
        return False
    for i in reversed(tagged):
        del cells[i]
    cells.append({"cell_type": "markdown", "id": re.sub(r"\W", "-", TAG),
                  "metadata": {"tags": [TAG]}, "source": source.splitlines(keepends=True)})
    nb_path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return False


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        default=sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")))
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    args = parser.parse_args(argv)
    stale = [nb.name for nb in args.notebooks if not update(nb, write=not args.check)]
    if stale:
        verb = "out of date" if args.check else "updated"
        print(f"api-links cell {verb}: {', '.join(stale)}")
    return 1 if (stale and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
