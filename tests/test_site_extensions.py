"""The book's own Sphinx extensions in book/_ext (no Sphinx build needed)."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))

pybtex = pytest.importorskip("pybtex")
pytest.importorskip("sphinxcontrib.bibtex")

import author_year_bibliography as ayb  # noqa: E402
import offline_mathjax  # noqa: E402
import site_assets  # noqa: E402
from pybtex.database import parse_string  # noqa: E402

BIB = r"""
@misc{one, author = {Cybenko, George}, title = {A}, year = {1989}}
@misc{two, author = {Greydanus, Sam and Kobak, Dmitry}, title = {B}, year = {2024}}
@article{many, author = {Zhang, C. and Bengio, S. and Hardt, M.}, title = {C}, year = {2017}}
@article{accent, author = {Mont{\'u}far, Guido and Pascanu, R. and Cho, K.}, title = {D},
         year = {2014}}
@article{von, author = {van Laarhoven, Twan}, title = {E}, year = {2017}}
@article{twin1, author = {Hanin, Boris and Rolnick, David}, title = {F}, year = {2019}}
@article{twin2, author = {Hanin, Boris and Rolnick, David}, title = {G}, year = {2019}}
"""


@pytest.fixture(scope="module")
def entries():
    return parse_string(BIB, "bibtex").entries


@pytest.mark.parametrize(
    "key, label",
    [
        ("one", "Cybenko, 1989"),
        ("two", "Greydanus and Kobak, 2024"),
        ("many", "Zhang et al., 2017"),
        ("accent", "Montúfar et al., 2014"),
        ("von", "van Laarhoven, 2017"),
    ],
)
def test_author_year_text_matches_the_in_text_citation(entries, key, label):
    assert ayb.author_year_text(entries[key]) == label


def test_label_style_disambiguates_equal_labels(entries):
    style = ayb.AuthorYearLabelStyle()
    keys = ["one", "twin1", "twin2", "many"]
    labels = list(style.format_labels([entries[k] for k in keys]))
    assert labels == [
        "Cybenko, 1989",
        "Hanin and Rolnick, 2019a",
        "Hanin and Rolnick, 2019b",
        "Zhang et al., 2017",
    ]
    assert ayb.disambiguate(["x", "y", "x"]) == ["xa", "y", "xb"]


def test_formatting_style_is_plain_with_author_year_labels(entries):
    ayb.setup(type("App", (), {})())  # registers both pybtex plugins
    style_cls = pybtex.plugin.find_plugin("pybtex.style.formatting", "authoryear")
    formatted = list(style_cls().format_entries([entries["two"], entries["one"]]))
    # Sorted by author, then labelled the way the text cites.
    assert [e.label for e in formatted] == ["Cybenko, 1989", "Greydanus and Kobak, 2024"]


@pytest.mark.parametrize(
    "text, stripped",
    [
        ("var a=1;\n//# sourceMappingURL=bootstrap.js.map", "var a=1;\n"),
        ("var a=1;\n//# sourceMappingURL=x.js.map\n", "var a=1;\n"),
        ("a{b:c}\n/*# sourceMappingURL=theme.css.map */", "a{b:c}\n"),
        ("var url = '//# not a map';\nvar b;", "var url = '//# not a map';\nvar b;"),
    ],
)
def test_strip_map_comment(text, stripped):
    assert site_assets.strip_map_comment(text) == stripped


def test_remove_source_maps(tmp_path):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "a.js").write_text("x;\n//# sourceMappingURL=a.js.map\n")
    (tmp_path / "scripts" / "a.js.map").write_text("{}" * 10)
    (tmp_path / "b.css").write_text("p{}")
    assert site_assets.remove_source_maps(tmp_path) == (1, 20)
    assert not list(tmp_path.rglob("*.map"))
    assert (tmp_path / "scripts" / "a.js").read_text() == "x;\n"
    assert (tmp_path / "b.css").read_text() == "p{}"


def test_is_thebe_asset():
    class Asset:
        def __init__(self, filename, **attributes):
            self.filename, self.attributes = filename, attributes

    assert site_assets.is_thebe_asset(Asset("sphinx-thebe.js", **{"async": "async"}))
    assert site_assets.is_thebe_asset(Asset("sphinx-thebe.css"))
    assert site_assets.is_thebe_asset(Asset("", body='const THEBE_JS_URL = "x"'))
    assert not site_assets.is_thebe_asset(Asset("togglebutton.js"))
    assert not site_assets.is_thebe_asset(Asset("", body="var x = 1"))


def test_copy_mathjax_copies_the_parts_pages_load(tmp_path):
    try:
        src = offline_mathjax.mathjax_source()
    except Exception as exc:  # the package is not installed in this environment
        pytest.skip(str(exc))
    dest = tmp_path / "_static" / "mathjax"
    offline_mathjax.copy_mathjax(src, dest)
    assert (dest / "tex-chtml.js").is_file()
    assert list((dest / "output" / "chtml" / "fonts" / "woff-v2").glob("MathJax_Main-*.woff"))
    assert (dest / "input" / "tex" / "extensions" / "boldsymbol.js").is_file()
    assert not (dest / "tex-svg.js").exists()  # bundles the site does not use stay out
    offline_mathjax.copy_mathjax(src, dest)  # a rebuild replaces the copy


def test_missing_mathjax_package_is_a_clear_error(monkeypatch):
    from sphinx.errors import ConfigError

    monkeypatch.setattr(offline_mathjax, "PACKAGE", "no-such-package-xyz")
    with pytest.raises(ConfigError, match="no-such-package-xyz"):
        offline_mathjax.mathjax_source()


def test_reference_style_takes_the_year_from_the_label():
    from sphinxcontrib.bibtex.plugin import find_plugin

    ayb.setup(type("App", (), {})())
    style = find_plugin("sphinxcontrib.bibtex.style.referencing", ayb.REFERENCE_STYLE)()
    kinds = {type(s) for s in style.styles}
    assert ayb._Parenthetical in kinds and ayb._Textual in kinds  # :cite:p: and :cite:t:
    assert type(style.role_style["p"]) is ayb._Parenthetical
    assert type(style.role_style["t"]) is ayb._Textual
    assert {"p", "t", "ps", "ts"} <= set(style.role_names())
    assert ayb.label_year_text("Hanin and Rolnick, 2019a") == "2019a"
    assert ayb.label_year_text("Cybenko, 1989") == "1989"


def test_without_the_package_the_build_falls_back_to_the_cdn_loudly(monkeypatch, capsys):
    monkeypatch.setattr(offline_mathjax, "PACKAGE", "no-such-package-xyz")
    config = type(
        "Config", (), {"mathjax_path": offline_mathjax.SPHINX_DEFAULT_PREFIX + "3/x.js"}
    )()
    offline_mathjax._use_local_mathjax(None, config)
    assert config.mathjax_path.startswith("https://")
    assert "no-such-package-xyz" in capsys.readouterr().err
