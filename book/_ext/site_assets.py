"""Sphinx extension: ship no source maps, and no Thebe scripts where Thebe is off.

The themes copy their webpack source maps (``*.js.map``, ``*.css.map``: 3.4 MB, more than the
scripts and styles they describe) into ``_static``. They serve only someone debugging the
themes' own sources, so after the build they are deleted, and so are the
``sourceMappingURL`` comments that point at them (a browser with its developer tools open
would otherwise request the missing files).

Jupyter Book always loads sphinx-thebe, which adds its configuration script to every page
twice; the second copy throws "Identifier 'THEBE_JS_URL' has already been declared" in every
reader's console. The book has no Thebe (live code) button (``launch_buttons.thebe`` is off),
so its script, its configuration and its style sheet are left out of the pages.

It also adds the book's own small style sheet (``static/udl.css`` beside this file): long
inline code names may wrap, so no page scrolls sideways on a phone.
"""

from __future__ import annotations

import re
from pathlib import Path

# `//# sourceMappingURL=x.js.map` (JavaScript) or `/*# sourceMappingURL=x.css.map */` (CSS),
# alone on the last line of a bundle.
_MAP_COMMENT = re.compile(
    r"\n?(?://[#@] sourceMappingURL=\S+|/\*[#@] sourceMappingURL=\S+ \*/)\s*$"
)


def strip_map_comment(text: str) -> str:
    """``text`` without a trailing sourceMappingURL comment (unchanged if it has none)."""
    return _MAP_COMMENT.sub("\n", text) if _MAP_COMMENT.search(text) else text


def remove_source_maps(static: Path) -> tuple[int, int]:
    """Delete ``*.map`` under ``static`` and the comments naming them; (files, bytes) removed."""
    files = nbytes = 0
    for path in sorted(static.rglob("*.map")):
        nbytes += path.stat().st_size
        path.unlink()
        files += 1
    for path in [*static.rglob("*.js"), *static.rglob("*.css")]:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
        stripped = strip_map_comment(text)
        if stripped != text:
            path.write_text(stripped, encoding="utf-8", errors="surrogateescape")
    return files, nbytes


def is_thebe_asset(asset) -> bool:
    """Whether a page's script or style sheet entry belongs to sphinx-thebe."""
    name = str(getattr(asset, "filename", asset) or "")
    body = str(getattr(asset, "attributes", {}).get("body", ""))
    return "sphinx-thebe" in name or "THEBE_JS_URL" in body


def _thebe_enabled(app) -> bool:
    options = app.config.html_theme_options or {}
    return bool((options.get("launch_buttons") or {}).get("thebe"))


def _drop_thebe(app, pagename, templatename, context, doctree) -> None:
    if _thebe_enabled(app):
        return
    for key in ("script_files", "css_files"):
        if key in context:
            context[key] = [a for a in context[key] if not is_thebe_asset(a)]


def _after_build(app, exception) -> None:
    if exception is None and app.builder.format == "html":
        remove_source_maps(Path(app.outdir) / "_static")


STATIC = Path(__file__).parent / "static"


def _add_static(app, config) -> None:
    config.html_static_path = [*config.html_static_path, str(STATIC)]


def setup(app):
    app.connect("config-inited", _add_static)
    app.add_css_file("udl.css")
    # Late (priority 900), after other extensions have copied their files into _static.
    app.connect("build-finished", _after_build, priority=900)
    app.connect("html-page-context", _drop_thebe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
