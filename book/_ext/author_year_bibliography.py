"""Sphinx extension: author-year labels in the bibliography, matching the citations in the text.

The text cites author-year, "(Zhang *et al.*, 2017)" (``bibtex_reference_style: author_year``),
while pybtex's ``plain`` style labels the bibliography [1], [2], ... so a reader cannot find
"Zhang et al., 2017" in the list by its label. This extension registers

* a pybtex label style ``authoryear`` that labels each entry exactly as sphinxcontrib-bibtex
  writes its author-year citation (same name formatting, same "et al." rule, same year), with
  a, b, ... appended to the year when two listed entries would get the same label, and
* a pybtex formatting style ``authoryear``: pybtex's ``plain`` (sorted by author, year, title)
  with that label style, selected by ``bibtex_default_style: authoryear`` in _config.yml, and
* a sphinxcontrib-bibtex reference style ``author_year_label``: its ``author_year`` style, but
  with the year taken from the entry's label, so that where two entries share authors and year
  the text cites "(Hanin and Rolnick, 2019a)" like the list (``bibtex_reference_style``).
"""

from __future__ import annotations

import dataclasses
import string
from collections import Counter, defaultdict
from types import SimpleNamespace

import pybtex.plugin
import sphinxcontrib.bibtex.plugin
from pybtex.richtext import Text
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle
from sphinxcontrib.bibtex.style.referencing import PersonStyle
from sphinxcontrib.bibtex.style.referencing.author_year import AuthorYearReferenceStyle
from sphinxcontrib.bibtex.style.referencing.basic_author_year import (
    BasicAuthorYearParentheticalReferenceStyle,
    BasicAuthorYearTextualReferenceStyle,
)
from sphinxcontrib.bibtex.style.template import (
    join,
    join2,
    node,
    post_text,
    pre_text,
    reference,
    year,
)

NAME = "authoryear"
REFERENCE_STYLE = "author_year_label"


def author_year_text(entry, person: PersonStyle | None = None) -> str:
    """The plain text of the parenthetical author-year citation of ``entry``.

    Built from the same templates as sphinxcontrib-bibtex's ``author_year`` reference style
    (first authors' last names, "and" for two, "et al." for three or more, then the year).
    """
    person = person or PersonStyle()
    template = join(sep=", ")[person.author_or_editor_or_title(full=False), year]
    data = {"entry": entry, "style": SimpleNamespace(person=person)}
    return template.format_data(data).render_as("text")


def disambiguate(labels: list[str]) -> list[str]:
    """Append a, b, ... to labels that occur more than once, in order of appearance."""
    counts = Counter(labels)
    seen: dict[str, int] = defaultdict(int)
    out = []
    for label in labels:
        if counts[label] > 1:
            out.append(label + string.ascii_lowercase[seen[label] % 26])
            seen[label] += 1
        else:
            out.append(label)
    return out


class AuthorYearLabelStyle(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        yield from disambiguate([author_year_text(entry) for entry in sorted_entries])


class AuthorYearStyle(PlainStyle):
    default_label_style = NAME


def label_year_text(label: str) -> str:
    """The year part of an author-year label: "2019a" of "Hanin and Rolnick, 2019a"."""
    return label.rpartition(", ")[2]


@node
def label_year(children, data):
    """The cited entry's year as its bibliography label gives it (with any a, b suffix)."""
    assert not children
    return Text(label_year_text(data["formatted_entry"].label))


@dataclasses.dataclass
class _Parenthetical(BasicAuthorYearParentheticalReferenceStyle):
    def inner(self, role_name):
        return join2(sep1=self.pre_text_sep, sep2=self.post_text_sep)[
            pre_text,
            reference[
                join(sep=self.author_year_sep)[
                    self.person.author_or_editor_or_title(full="s" in role_name),
                    label_year,
                ]
            ],
            post_text,
        ]


@dataclasses.dataclass
class _Textual(BasicAuthorYearTextualReferenceStyle):
    def inner(self, role_name):
        return join(sep=self.text_reference_sep)[
            self.person.author_or_editor_or_title(full="s" in role_name),
            join[
                self.bracket.left,
                join2(sep1=self.pre_text_sep, sep2=self.post_text_sep)[
                    pre_text,
                    reference[label_year],
                    post_text,
                ],
                self.bracket.right,
            ],
        ]


@dataclasses.dataclass
class AuthorYearLabelReferenceStyle(AuthorYearReferenceStyle):
    """sphinxcontrib-bibtex's author_year, with the year of the entry's bibliography label."""

    def __post_init__(self):
        super().__post_init__()
        for i, style in enumerate(self.styles):
            if type(style) is BasicAuthorYearParentheticalReferenceStyle:
                self.styles[i] = _Parenthetical(**_fields(style))
            elif type(style) is BasicAuthorYearTextualReferenceStyle:
                self.styles[i] = _Textual(**_fields(style))
        # The role -> style table was filled from the original styles: refill it.
        self.role_style.update(
            (role, style) for style in self.styles for role in style.role_names()
        )


def _fields(style) -> dict:
    return {f.name: getattr(style, f.name) for f in dataclasses.fields(style) if f.init}


def setup(app):
    pybtex.plugin.register_plugin("pybtex.style.labels", NAME, AuthorYearLabelStyle, force=True)
    pybtex.plugin.register_plugin("pybtex.style.formatting", NAME, AuthorYearStyle, force=True)
    sphinxcontrib.bibtex.plugin.register_plugin(
        "sphinxcontrib.bibtex.style.referencing",
        REFERENCE_STYLE,
        AuthorYearLabelReferenceStyle,
        force=True,
    )
    return {"parallel_read_safe": True, "parallel_write_safe": True}
