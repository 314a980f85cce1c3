"""Point the book at its repository: `_config.yml` and every chapter's install cell together.

Usage (from the repository root):

    python tools/set_repository.py https://github.com/OWNER/REPO [BRANCH]
    python tools/set_repository.py --check   # warn if the URL is still the placeholder

The repository URL and branch live in one place, `repository:` in `_config.yml`; the site's
Colab, GitHub and download buttons are built from it. Each chapter's first code cell installs
`udl_jax` in Colab from the same URL and branch (tests/test_book.py checks that they agree),
and book/using.md and CONTRIBUTING.md quote that cell. This script rewrites all of them at once,
changing only the URL and branch text (every other byte of each file stays as it was), so a
fork sets its own repository with one command. BRANCH defaults to the one configured now.
Colab opens notebooks only from GitHub, so the URL must be https://github.com/OWNER/REPO.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER = "https://github.com/udl-book/why-deep-learning-works"
# Files that quote the install cell; rewritten where they contain it.
DOC_FILES = ("book/using.md", "CONTRIBUTING.md")

_URL = re.compile(r"https://github\.com/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_BRANCH = re.compile(r"\w[\w.-]*")  # what the install-cell test accepts (no "/")
_REPO_BLOCK = re.compile(r"^repository:\n((?:[ \t]+.*\n|[ \t]*\n)+)", re.M)


def normalize_url(url: str) -> str:
    """``url`` as the config stores it (no trailing slash or .git); ValueError if not GitHub."""
    url = url.strip()
    url = url.removesuffix("/").removesuffix(".git")
    if not _URL.fullmatch(url):
        raise ValueError(
            f"URL must look like https://github.com/OWNER/REPO (Colab opens notebooks only "
            f"from GitHub), got {url!r}"
        )
    return url


def check_branch(branch: str) -> str:
    if not _BRANCH.fullmatch(branch):
        raise ValueError(
            f"BRANCH must be letters, digits, '_', '.' or '-' (no '/'), got {branch!r}"
        )
    return branch


def read_repository(config_text: str) -> tuple[str, str]:
    """(url, branch) of the ``repository:`` block of _config.yml's text."""
    block = _REPO_BLOCK.search(config_text)
    if block is None:
        raise ValueError("_config.yml has no `repository:` block")
    values = {}
    for key in ("url", "branch"):
        m = re.search(rf"^[ \t]+{key}:[ \t]*(\S+)", block.group(1), re.M)
        if m is None:
            raise ValueError(f"_config.yml's repository block has no `{key}:`")
        values[key] = m.group(1).strip("\"'")
    return values["url"], values["branch"]


def rewrite_config(config_text: str, url: str, branch: str) -> str:
    """_config.yml's text with repository.url and repository.branch replaced (comments kept)."""
    block = _REPO_BLOCK.search(config_text)
    if block is None:
        raise ValueError("_config.yml has no `repository:` block")
    body = block.group(1)
    for key, value in (("url", url), ("branch", branch)):
        body = re.sub(
            rf"^([ \t]+{key}:[ \t]*)\S+",
            lambda m, v=value: m.group(1) + v,
            body,
            count=1,
            flags=re.M,
        )
    return config_text[: block.start(1)] + body + config_text[block.end(1) :]


def install_spec(url: str, branch: str) -> str:
    """The pip requirement text of the install cell, as it appears in its source."""
    return f"git+{url}@{branch}"


def rewrite_notebook(text: str, old: str, new: str) -> tuple[str, int]:
    """The notebook's raw JSON text with its first code cell's ``old`` spec replaced by ``new``.

    Only that cell is touched, and only the spec text inside it, so the file's formatting and
    every output stay byte-for-byte. Returns (text, number of replacements).
    """
    cells = json.loads(text)["cells"]
    code = [c for c in cells if c.get("cell_type") == "code"]
    if not code:
        return text, 0
    source = code[0]["source"]
    lines = source if isinstance(source, list) else [source]
    count = 0
    for line in lines:
        if old not in line:
            continue
        encoded = json.dumps(line, ensure_ascii=False)
        replaced = json.dumps(line.replace(old, new), ensure_ascii=False)
        if encoded not in text:  # written with other escaping: fall back to reserialising
            raise ValueError("unexpected JSON escaping; rewrite the install cell by hand")
        text = text.replace(encoded, replaced, 1)
        count += line.count(old)
    return text, count


def set_repository(root: Path, url: str, branch: str | None = None) -> list[str]:
    """Rewrite root's _config.yml, notebooks and docs; returns the files changed."""
    url = normalize_url(url)
    config_path = root / "_config.yml"
    config_text = config_path.read_text(encoding="utf-8")
    old_url, old_branch = read_repository(config_text)
    branch = check_branch(branch or old_branch)
    old, new = install_spec(old_url, old_branch), install_spec(url, branch)

    changed = []
    new_config = rewrite_config(config_text, url, branch)
    if new_config != config_text:
        config_path.write_text(new_config, encoding="utf-8")
        changed.append("_config.yml")
    stale = []
    for nb in sorted((root / "notebooks").glob("*.ipynb")):
        text = nb.read_text(encoding="utf-8")
        new_text, count = rewrite_notebook(text, old, new)
        if count == 0 and old != new and new not in text:
            stale.append(nb.name)
        if new_text != text:
            nb.write_text(new_text, encoding="utf-8")
            changed.append(nb.relative_to(root).as_posix())
    for rel in DOC_FILES:
        path = root / rel
        if path.exists():
            text = path.read_text(encoding="utf-8")
            if old in text:
                path.write_text(text.replace(old, new), encoding="utf-8")
                changed.append(rel)
    if stale:
        print(
            f"warning: no install cell with {old} in {', '.join(stale)}; "
            "edit their first code cell by hand",
            file=sys.stderr,
        )
    return changed


def placeholder_warning(root: Path) -> str | None:
    """A loud multi-line warning if _config.yml still has the placeholder URL, else None."""
    url, _ = read_repository((root / "_config.yml").read_text(encoding="utf-8"))
    if url != PLACEHOLDER:
        return None
    bar = "!" * 78
    return "\n".join(
        [
            bar,
            f"!! WARNING: the repository URL in _config.yml is the placeholder {url}",
            "!! The site's Colab, GitHub and download buttons and every chapter's install cell",
            "!! point there, so 'run in Colab' fails for readers until it is the real one. Set it:",
            "!!     python tools/set_repository.py https://github.com/OWNER/REPO [BRANCH]",
            bar,
        ]
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", nargs="?", help="https://github.com/OWNER/REPO")
    parser.add_argument("branch", nargs="?", help="branch (default: the configured one)")
    parser.add_argument("--check", action="store_true", help="only warn about a placeholder")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.check:
        warning = placeholder_warning(args.root)
        if warning:
            print(warning, file=sys.stderr)
        return 0
    if not args.url:
        parser.error("give the repository URL (or --check)")
    try:
        changed = set_repository(args.root, args.url, args.branch)
    except ValueError as exc:
        print(f"set_repository: {exc}", file=sys.stderr)
        return 2
    url, branch = read_repository((args.root / "_config.yml").read_text(encoding="utf-8"))
    print(f"repository: {url} (branch {branch}); changed {len(changed)} files")
    for name in changed:
        print(f"  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
