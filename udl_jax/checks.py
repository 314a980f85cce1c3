"""Check cells: a chapter's claims as named, recorded assertions with tolerances.

A bare ``assert`` stops at the first failure and keeps no record of how close the measurement
came to the tolerance. Here each claim is a `Check` (name, measured value, bounds, passed);
`verify` prints them all, raises one `AssertionError` naming every failed check, and, when
``$UDL_JAX_CHECKS_FILE`` is set, appends them as JSON lines to that file. That record is what
``make robustness`` (``tools/robustness.py``) collects when it reruns each chapter under other
seeds, so the book's robustness table shows how much margin each claim has.

Usage, in a chapter's last code cell::

    checks.verify([
        checks.between("median sharpness / (2/eta), eta = 0.1", level, 1.0, 1.15),
        checks.at_most("loss increases before the edge (fraction)", up_before, 0.01),
        checks.holds("quadratic diverges iff eta > 2/lambda", np.array_equal(a, b)),
    ])
"""

from __future__ import annotations

import json
import math
import os
import textwrap
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = [
    "ENV_FILE",
    "Check",
    "between",
    "at_least",
    "at_most",
    "holds",
    "tolerance_text",
    "TABLE_WIDTH",
    "format_table",
    "verify",
]

ENV_FILE = "UDL_JAX_CHECKS_FILE"
"""Environment variable naming a file to which `verify` appends its checks as JSON lines."""


class Check(NamedTuple):
    """One claim: ``low <= value <= high`` (either bound may be None), or a boolean.

    Attributes:
      name: what is claimed, in words (unique within a chapter).
      value: the measured number (float), or the boolean for `holds`.
      low, high: the tolerance interval; None where unbounded.
      passed: whether the claim holds.
      paper: the citation key (``book/references.bib``) of the paper whose claim this checks, or
        None for a check of the book's own code (an identity, a closed form).
      reported: what that paper reports for this quantity, in words (``"94% (table 1)"``), or
        None where it gives no number to compare with.
    """

    name: str
    value: float | bool
    low: float | None
    high: float | None
    passed: bool
    paper: str | None = None
    reported: str | None = None


def _name(name) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name: expected a non-empty string, got {name!r}")
    return name


def _number(value, what: str) -> float:
    arr = np.asarray(value)
    if arr.shape != () or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise TypeError(f"{what}: expected a real scalar, got {value!r}")
    return float(arr)


def _source(paper, reported) -> tuple[str | None, str | None]:
    if paper is not None and (not isinstance(paper, str) or not paper.strip() or " " in paper):
        raise ValueError(f"paper: expected a citation key from references.bib, got {paper!r}")
    if reported is not None:
        if not isinstance(reported, str) or not reported.strip():
            raise ValueError(f"reported: expected the paper's number as text, got {reported!r}")
        if paper is None:
            raise ValueError("reported: give paper= too, the key of the paper that reports it")
    return paper, reported


def between(
    name: str,
    value,
    low: float | None,
    high: float | None,
    *,
    paper: str | None = None,
    reported: str | None = None,
) -> Check:
    """Check ``low <= value <= high``; a NaN value fails. Either bound may be None.

    ``paper`` (a citation key) and ``reported`` (the paper's number, as text) say which published
    claim this reproduces; the book's claims ledger lists them beside the measured value.
    """
    name = _name(name)
    paper, reported = _source(paper, reported)
    v = _number(value, "value")
    lo = None if low is None else _number(low, "low")
    hi = None if high is None else _number(high, "high")
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"low, high: expected low <= high, got {lo} > {hi}")
    ok = not math.isnan(v) and (lo is None or v >= lo) and (hi is None or v <= hi)
    return Check(name, v, lo, hi, bool(ok), paper, reported)


def at_least(name: str, value, low: float, **source) -> Check:
    """Check ``value >= low`` (``paper=``, ``reported=`` as in `between`)."""
    return between(name, value, low, None, **source)


def at_most(name: str, value, high: float, **source) -> Check:
    """Check ``value <= high`` (``paper=``, ``reported=`` as in `between`)."""
    return between(name, value, None, high, **source)


def holds(
    name: str, condition, *, paper: str | None = None, reported: str | None = None
) -> Check:
    """Check that a boolean (exact) claim is true, e.g. an integer count or an array equality.

    ``paper`` and ``reported`` as in `between`.
    """
    name = _name(name)
    paper, reported = _source(paper, reported)
    if not isinstance(condition, (bool, np.bool_)):
        raise TypeError(
            f"condition: expected a bool (use between/at_most for numbers), got {condition!r}"
        )
    return Check(name, bool(condition), None, None, bool(condition), paper, reported)


def _fmt(x) -> str:
    if isinstance(x, bool):
        return str(x).lower()
    return f"{x:.4g}"


def tolerance_text(low: float | None, high: float | None) -> str:
    """A check's tolerance in words: ``"[1, 1.15]"``, ``"<= 0.5"``, ``">= 0.2"`` or ``"true"``."""
    if low is None and high is None:
        return "true"
    if low is None:
        return f"<= {_fmt(high)}"
    if high is None:
        return f">= {_fmt(low)}"
    return f"[{_fmt(low)}, {_fmt(high)}]"


TABLE_WIDTH = 78
"""Width of `format_table`'s lines: what a code block on the site shows without scrolling."""


def format_table(results: Sequence[Check], width: int = TABLE_WIDTH) -> str:
    """The checks as a fixed-width text table: check, value, tolerance, pass/FAIL.

    Names too long for the line are wrapped onto continuation lines of the first column, so no
    line is longer than ``width`` (unless a single word or the other columns alone exceed it).
    """
    head = ("check", "value", "tolerance", "")
    rows = [
        (c.name, _fmt(c.value), tolerance_text(c.low, c.high), "pass" if c.passed else "FAIL")
        for c in results
    ]
    w_val = max(len(r[1]) for r in [head, *rows])
    w_tol = max(len(r[2]) for r in [head, *rows])
    rest = 2 + w_val + 2 + w_tol + 2 + 4
    w_name = min(max(len(r[0]) for r in [head, *rows]), max(16, width - rest))
    lines = []
    for name, value, tol, ok in [head, *rows]:
        parts = textwrap.wrap(
            name, w_name, subsequent_indent="  ", break_on_hyphens=False
        ) or [""]
        for extra in parts[:-1]:
            lines.append(extra)
        line = f"{parts[-1]:<{w_name}}  {value:>{w_val}}  {tol:<{w_tol}}  {ok}"
        lines.append(line.rstrip())
    return "\n".join(lines)


def verify(results: Sequence[Check]) -> None:
    """Print every check, record them, and raise if any failed.

    Args:
      results: the chapter's `Check` records (from `between`, `at_least`, `at_most`, `holds`).

    Raises:
      AssertionError: naming each failed check with its value and tolerance.
    """
    results = list(results)
    if not results or not all(isinstance(c, Check) for c in results):
        raise TypeError("results: expected a non-empty sequence of udl_jax.checks.Check")
    names = [c.name for c in results]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"results: check names must be unique, repeated: {dup}")
    path = os.environ.get(ENV_FILE)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            for c in results:
                f.write(json.dumps(c._asdict()) + "\n")
    print(format_table(results))
    failed = [c for c in results if not c.passed]
    if failed:
        lines = "; ".join(
            f"{c.name}: {_fmt(c.value)}, expected {tolerance_text(c.low, c.high)}" for c in failed
        )
        raise AssertionError(f"{len(failed)} of {len(results)} checks failed: {lines}")
    print(f"all {len(results)} checks passed")
