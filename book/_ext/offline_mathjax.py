"""Sphinx extension: serve MathJax 3 from the site itself, never from a CDN.

Sphinx loads MathJax from jsdelivr by default, so a reader offline (or behind a firewall that
blocks the CDN) sees raw ``\\(...\\)`` strings. This extension points ``mathjax_path`` at a copy
in ``_static/mathjax`` and copies the files there from the PyPI package
``sphinx-mathjax-offline`` (MathJax 3.2.2, pinned in environment.yml), so the math renders from
the site's own files. Only the parts a page can load are copied: the ``tex-chtml`` bundle, the
TeX extensions it autoloads, the CHTML fonts, and the menu with its accessibility (speech)
modules; the other bundles (SVG output, MathML input, node) are left out.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

from sphinx.errors import ConfigError

PACKAGE = "sphinx-mathjax-offline"  # the PyPI distribution and its (hyphenated) module name
BUNDLE = "tex-chtml.js"
# Relative to the package's static/mathjax: what tex-chtml.js loads, eagerly or on demand.
PARTS = (BUNDLE, "input/tex", "output/chtml", "ui", "a11y", "sre")
SPHINX_DEFAULT_PREFIX = "https://cdn.jsdelivr.net/npm/mathjax@"


def mathjax_source() -> Path:
    """The folder of MathJax's built components inside the installed package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise ConfigError(
            f"offline_mathjax: the package {PACKAGE!r} is not installed; it ships the MathJax "
            "that the site serves. Run `make book` (it installs environment.yml's pins) or "
            f"`pip install {PACKAGE}`."
        )
    src = Path(spec.origin).parent / "static" / "mathjax"
    if not (src / BUNDLE).is_file():
        raise ConfigError(f"offline_mathjax: {src / BUNDLE} is missing; reinstall {PACKAGE}.")
    return src


def copy_mathjax(src: Path, dest: Path) -> None:
    """Copy the parts of MathJax the site uses from ``src`` into ``dest`` (replacing it)."""
    if dest.exists():
        shutil.rmtree(dest)
    for part in PARTS:
        source = src / part
        if source.is_dir():
            shutil.copytree(source, dest / part)
        else:
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / part)


def _use_local_mathjax(app, config) -> None:
    # Keep a path someone set on purpose; replace only Sphinx's CDN default.
    if not config.mathjax_path or config.mathjax_path.startswith(SPHINX_DEFAULT_PREFIX):
        try:
            mathjax_source()
        except ConfigError as exc:
            # An environment made before the package was pinned: build anyway (math from the
            # CDN, as before), but say so loudly; `make browser-test` fails on such a site.
            print(f"\n!!! {exc}\n!!! This build loads MathJax from the CDN.\n", file=sys.stderr)
            return
        config.mathjax_path = f"mathjax/{BUNDLE}"  # relative: served from _static/


def _copy(app, exception) -> None:
    if exception is None and app.builder.format == "html":
        if app.config.mathjax_path == f"mathjax/{BUNDLE}":
            copy_mathjax(mathjax_source(), Path(app.outdir) / "_static" / "mathjax")


def setup(app):
    app.connect("config-inited", _use_local_mathjax)
    app.connect("build-finished", _copy)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
