"""The pure helpers of tools/browser_check.py (no browser needed)."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("browser_check", ROOT / "tools/browser_check.py")
bc = importlib.util.module_from_spec(_spec)
sys.modules["browser_check"] = bc  # dataclasses look their module up there
_spec.loader.exec_module(bc)


@pytest.mark.parametrize(
    "url, local",
    [
        ("http://127.0.0.1:8000/notebooks/01_neuron.html", True),
        ("http://127.0.0.1:41234/_static/mathjax/tex-chtml.js", True),
        ("data:image/png;base64,AAAA", True),
        ("about:blank", True),
        ("https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js", False),
        ("https://unpkg.com/thebe@0.8.2/lib/index.js", False),
        ("http://127.0.0.1.example.com/x", False),
        ("http://10.0.0.1/x", False),
    ],
)
def test_is_local_url(url, local):
    assert bc.is_local_url(url) is local


def test_find_raw_tex():
    assert bc.find_raw_tex("The error falls like  and the slope is -2.") == []
    found = bc.find_raw_tex(r"falls like \(1/n^2\) in n; $$ \sum_i x_i $$ and \[a\]")
    assert len(found) == 3 and found[0].startswith(r"\(1/n^2\)")
    assert bc.find_raw_tex("costs $5 or $10") == []  # single dollars are prose, not math


def test_chapter_pages(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "book").mkdir()
    for name in ("02_b.html", "01_a.html"):
        (tmp_path / "notebooks" / name).write_text("")
    (tmp_path / "book" / "intro.html").write_text("")
    assert bc.chapter_pages(tmp_path) == [
        "book/intro.html",
        "notebooks/01_a.html",
        "notebooks/02_b.html",
    ]


def test_figure_problems():
    column = 688.0
    images = [
        {"src": "../_images/fits.png", "natural": 688, "rendered": 688.0},  # made for the column
        {"src": "../_images/small.png", "natural": 300, "rendered": 300.0},  # narrower: fine
        {"src": "../_images/slightly.png", "natural": 700, "rendered": 688.0},  # -1.7 %: fine
        {"src": "../_images/wide.png", "natural": 1028, "rendered": 688.0},  # scaled down
        {"src": "../_images/over.png", "natural": 900, "rendered": 900.0},  # overflows
        {"src": "../_images/broken.png", "natural": 0, "rendered": 0.0},  # reported elsewhere
    ]
    problems = bc.figure_problems(images, column)
    assert len(problems) == 2
    assert "wide.png" in problems[0] and "1028 px shrunk to 688 px (67%)" in problems[0]
    assert "over.png" in problems[1] and "wider than the 688 px column" in problems[1]


def test_citation_problems():
    labels = {"id1": "Zhang et al., 2017", "id2": "Cybenko, 1989"}
    ok = [
        {"text": "Zhang et al.,\n 2017", "target": "id1", "before": "see ("},
        {"text": "2017", "target": "id1", "before": "as Zhang et al. ["},  # textual
        {"text": "Cybenko, 1989", "target": "id2", "before": ""},
    ]
    assert bc.citation_problems(ok, labels) == []
    bad = [
        {"text": "[1]", "target": "id1", "before": ""},
        {"text": "2017", "target": "id1", "before": "as Hardt et al. ["},
        {"text": "Nobody, 2000", "target": "id9", "before": ""},
    ]
    problems = bc.citation_problems(bad, labels)
    assert len(problems) == 3
    assert "labels it [Zhang et al., 2017]" in problems[0] and "not an entry" in problems[2]


def test_search_problems():
    assert bc.search_problems(["../book/claims.html", "../notebooks/04_ntk.html"]) == []
    assert "no chapter page" in bc.search_problems(["../book/claims.html"])[0]
    assert bc.search_problems([]) != []


def test_summarize_and_closing_line_counts():
    reports = [
        bc.PageReport("notebooks/01.html", [], {"script": 2_000_000, "stylesheet": 500_000}, 3, 2),
        bc.PageReport("notebooks/02.html", ["figure x: too wide"], {}, 0, 1),
    ]
    lines, failed = bc.summarize(reports)
    assert failed == 1
    assert lines[0].startswith("ok") and "2.50 MB" in lines[0]
    assert lines[1].startswith("FAIL") and lines[2].strip() == "- figure x: too wide"
    assert bc.format_bytes(1234) == "1.2 kB"


def test_skips_cleanly_without_chromium(tmp_path, capsys):
    missing = tmp_path / "no-such-chromium"
    # An explicit binary that does not exist: the check must not crash the caller.
    code = bc.main(["--chromium", str(missing), "--site", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and "browser test skipped" in out


def test_serves_only_on_loopback(tmp_path):
    import urllib.request

    (tmp_path / "x.html").write_text("hello")
    with bc.serve(tmp_path) as base:
        assert base.startswith("http://127.0.0.1:")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(base + "x.html", timeout=5) as r:
            assert r.read() == b"hello"


def test_skips_cleanly_when_chromium_does_not_start(tmp_path, capsys):
    pytest.importorskip("playwright.sync_api")
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    (tmp_path / "site" / "notebooks").mkdir(parents=True)
    code = bc.main(["--chromium", str(fake), "--site", str(tmp_path / "site")])
    assert code == 0 and "browser test skipped" in capsys.readouterr().out
