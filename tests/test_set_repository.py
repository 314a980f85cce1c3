"""tools/set_repository.py, run on a temporary copy of the repository's files."""

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("set_repository", ROOT / "tools/set_repository.py")
sr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sr)

NEW_URL = "https://github.com/some-fork/wdlw-copy"


@pytest.fixture
def tree(tmp_path):
    """_config.yml, three chapters and the docs quoting the install cell, copied."""
    shutil.copy(ROOT / "_config.yml", tmp_path / "_config.yml")
    (tmp_path / "notebooks").mkdir()
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb"))[:3]:
        shutil.copy(nb, tmp_path / "notebooks" / nb.name)
    for rel in sr.DOC_FILES:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    return tmp_path


def _install_specs(nb: Path):
    cells = json.loads(nb.read_text())["cells"]
    first = "".join(next(c for c in cells if c["cell_type"] == "code")["source"])
    return re.findall(r"git\+(\S+?)@(\w[\w.-]*)", first)  # as tests/test_book.py reads it


def test_rewrites_config_notebooks_and_docs_consistently(tree):
    old_url, old_branch = sr.read_repository((tree / "_config.yml").read_text())
    before = {p: p.read_text() for p in tree.rglob("*") if p.is_file()}
    changed = sr.set_repository(tree, NEW_URL + ".git/", "dev-1.0")

    assert sr.read_repository((tree / "_config.yml").read_text()) == (NEW_URL, "dev-1.0")
    notebooks = sorted((tree / "notebooks").glob("*.ipynb"))
    for nb in notebooks:
        assert _install_specs(nb) == [(NEW_URL, "dev-1.0")]
        # Only the spec changed: same cells, same outputs, same bytes elsewhere.
        old_nb, new_nb = json.loads(before[nb]), json.loads(nb.read_text())
        assert len(old_nb["cells"]) == len(new_nb["cells"])
        assert nb.read_text() == before[nb].replace(
            f"git+{old_url}@{old_branch}", f"git+{NEW_URL}@dev-1.0", 1
        )
    for rel in sr.DOC_FILES:
        text = (tree / rel).read_text()
        assert f"git+{NEW_URL}@dev-1.0" in text and f"git+{old_url}@" not in text
    assert "_config.yml" in changed and len(changed) == 1 + len(notebooks) + len(sr.DOC_FILES)

    # And back: every file byte-identical to the original.
    sr.set_repository(tree, old_url, old_branch)
    assert {p: p.read_text() for p in tree.rglob("*") if p.is_file()} == before


def test_branch_defaults_to_the_configured_one(tree):
    _, branch = sr.read_repository((tree / "_config.yml").read_text())
    sr.set_repository(tree, NEW_URL)
    assert sr.read_repository((tree / "_config.yml").read_text()) == (NEW_URL, branch)


def test_config_comments_and_other_keys_are_kept(tree):
    text = (tree / "_config.yml").read_text()
    new = sr.rewrite_config(text, NEW_URL, "main")
    assert new.count("\n") == text.count("\n")
    assert [ln for ln in new.splitlines() if NEW_URL not in ln] == [
        ln for ln in text.splitlines() if sr.PLACEHOLDER not in ln or "url:" not in ln
    ]


@pytest.mark.parametrize(
    "url",
    ["http://github.com/a/b", "https://gitlab.com/a/b", "github.com/a/b", "https://github.com/a"],
)
def test_rejects_urls_colab_cannot_open(tree, url):
    with pytest.raises(ValueError, match="URL must look like"):
        sr.set_repository(tree, url)


def test_rejects_a_branch_the_install_cell_cannot_hold(tree):
    with pytest.raises(ValueError, match="BRANCH"):
        sr.set_repository(tree, NEW_URL, "feature/x")


def test_placeholder_warning(tree):
    sr.set_repository(tree, sr.PLACEHOLDER)
    warning = sr.placeholder_warning(tree)
    assert warning is not None and "WARNING" in warning and "set_repository.py" in warning
    sr.set_repository(tree, NEW_URL)
    assert sr.placeholder_warning(tree) is None


def test_main_check_exits_zero_and_warns(tree, capsys):
    sr.set_repository(tree, sr.PLACEHOLDER)
    assert sr.main(["--check", "--root", str(tree)]) == 0
    assert "placeholder" in capsys.readouterr().err
    assert sr.main([NEW_URL, "--root", str(tree)]) == 0
    assert sr.main(["not-a-url", "--root", str(tree)]) == 2
