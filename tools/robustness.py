"""Run every chapter under several seeds and tabulate its checks: ``make robustness``.

Each chapter has a code cell tagged ``parameters`` (papermill's convention) that sets ``seed``
(and, in some chapters, size knobs). For every chapter and seed this script executes the
notebook with papermill, the seed injected after that cell, and ``$UDL_JAX_CHECKS_FILE`` set
so that the chapter's check cell (`udl_jax.checks.verify`) appends its checks, passed or not,
to a JSON-lines file. It then prints one table, chapter x check x seed, and writes the book's
"How robust are the claims" page (``book/robustness.md``), the claims ledger
(``book/claims.md``: every check with the paper it reproduces, the paper's number, the measured
value and its pass rate) and the raw records (``book/robustness.json``).

    python tools/robustness.py                       # all chapters, seeds 0 1000 2000
    python tools/robustness.py notebooks/08_*.ipynb --seeds 0 1000 --no-page
    python tools/robustness.py notebooks/12_*.ipynb   # rerun one chapter, update the page

When only some chapters are run, the page keeps the other chapters' rows from the previous
record (``book/robustness.json``), as long as they were run under the same seeds; chapters
whose notebook no longer exists are dropped.

The other seeds are 1000 and 2000 so that chapters that derive several integer seeds as
``seed + i`` (i < 1000) never reuse one another's draws. The exit status is 1 if any check
failed or any run broke.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from udl_jax.checks import tolerance_text

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (0, 1000, 2000)


def parameters_cell(nb_path: Path) -> str:
    """The source of the notebook's ``parameters``-tagged cell; raises if there is none."""
    cells = json.loads(nb_path.read_text())["cells"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise ValueError(
            f"{nb_path.name}: expected one cell tagged 'parameters', found {len(tagged)}"
        )
    source = "".join(tagged[0]["source"])
    if "seed" not in source:
        raise ValueError(f"{nb_path.name}: the parameters cell does not set `seed`")
    return source


def run_one(nb_path: Path, seed: int, workdir: Path, env_extra: dict[str, str]) -> dict:
    """Execute one chapter under one seed; return its checks, status and wall time."""
    checks_file = workdir / f"{nb_path.stem}-{seed}.jsonl"
    out_nb = workdir / f"{nb_path.stem}-{seed}.ipynb"
    checks_file.unlink(missing_ok=True)
    env = {**os.environ, "UDL_JAX_CHECKS_FILE": str(checks_file), **env_extra}
    cmd = [
        sys.executable, "-m", "papermill", str(nb_path), str(out_nb),
        "-p", "seed", str(seed), "-k", "python3", "--cwd", str(nb_path.parent),
        "--no-progress-bar", "--log-level", "WARNING",
    ]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    checks = []
    if checks_file.exists():
        checks = [json.loads(line) for line in checks_file.read_text().splitlines() if line]
    status = "ok" if proc.returncode == 0 else ("checks failed" if checks else "error")
    error = ""
    if status == "error":
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
        error = "\n".join(tail)
    return {
        "chapter": nb_path.stem, "seed": seed, "status": status, "wall_s": round(wall, 1),
        "checks": checks, "error": error,
    }  # fmt: skip


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "true" if v else "false"
    return f"{v:.3g}"


def _tolerance(c) -> str:
    return tolerance_text(c["low"], c["high"])


def table_rows(runs: list[dict], seeds: list[int]):
    """Rows (chapter, check, tolerance, value per seed, passes) in chapter and check order."""
    by = {(r["chapter"], r["seed"]): r for r in runs}
    for chapter in sorted({r["chapter"] for r in runs}):
        names: list[str] = []
        for s in seeds:
            for c in by[(chapter, s)]["checks"]:
                if c["name"] not in names:
                    names.append(c["name"])
        if not names:
            broke = "(no checks recorded: the run broke)"
            yield chapter, broke, "", ["–"] * len(seeds), f"0/{len(seeds)}"
            continue
        for name in names:
            values, passes, tol = [], 0, ""
            for s in seeds:
                c = next((c for c in by[(chapter, s)]["checks"] if c["name"] == name), None)
                if c is None:
                    values.append("(not run)")
                    continue
                tol = _tolerance(c)
                values.append(_fmt(c["value"]) + ("" if c["passed"] else " ✗"))
                passes += c["passed"]
            yield chapter, name, tol, values, f"{passes}/{len(seeds)}"


def print_table(runs, seeds) -> None:
    rows = list(table_rows(runs, seeds))
    header = ("chapter", "check", "tolerance", *[f"seed {s}" for s in seeds], "pass")
    cols = [(r[0], r[1], r[2], *r[3], r[4]) for r in rows]
    widths = [min(60, max(len(str(x[i])) for x in [header, *cols])) for i in range(len(header))]
    line = "  ".join(f"{h:<{w}}" for h, w in zip(header, widths, strict=True))
    print(line)
    print("-" * len(line))
    for x in cols:
        print("  ".join(f"{str(v)[:w]:<{w}}" for v, w in zip(x, widths, strict=True)))


def _chapter_heading(chapter: str) -> list[str]:
    """A section heading with the chapter's title and a link to it (the stem if not found)."""
    nb = ROOT / "notebooks" / f"{chapter}.ipynb"
    if not nb.exists():
        return [f"## {chapter}"]
    first = "".join(json.loads(nb.read_text())["cells"][0]["source"]).splitlines()
    title = next((x[2:].strip() for x in first if x.startswith("# ")), chapter)
    number = chapter.split("_")[0].lstrip("0")
    return [f"## {number}. {title}", "", f"The chapter: {{doc}}`../notebooks/{chapter}`."]


def write_page(runs, seeds, page: Path, jobs: int = 1) -> None:
    rows = list(table_rows(runs, seeds))
    n_checks = len(rows)
    n_robust = sum(r[4] == f"{len(seeds)}/{len(seeds)}" for r in rows)
    walls = {}
    for r in runs:
        walls.setdefault(r["chapter"], []).append(r["wall_s"])
    lines = [
        "# How robust are the claims",
        "",
        "Every chapter ends in a check cell that asserts its claims with tolerances. A tolerance",
        "set from one run could be tuned to one random draw, so `make robustness`",
        "(`tools/robustness.py`) reruns every chapter with other seeds: the chapter's `seed`",
        "parameter (its cell tagged `parameters`) is set with papermill, which changes every",
        "random choice the chapter makes (initializations, minibatches, label noise, random",
        "features, probes), while the data sets stay the published ones (MNIST-1D is generated",
        "with its own seed 42). Each check records its value whether or not it passes.",
        "",
        f"This page was generated by that run on {datetime.date.today().isoformat()}",
        f"({platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}):",
        f"**{n_robust} of {n_checks} checks pass under all {len(seeds)} seeds**"
        + ("." if n_robust == n_checks else "; ✗ marks a failure."),
        "Where a chapter's text says a claim is seed-fragile, the check asserts what does hold.",
        "Values are rounded to three significant digits; `true`/`false` are exact checks.",
        "",
    ]
    load = f" ({jobs} chapters at a time on {os.cpu_count()} cores)" if jobs > 1 else ""
    by_chapter: dict[str, list] = {}
    for r in rows:
        by_chapter.setdefault(r[0], []).append(r)
    for chapter, crow in by_chapter.items():
        mean_wall = sum(walls[chapter]) / len(walls[chapter])
        lines += [*_chapter_heading(chapter), ""]
        lines += [
            f"Mean wall time per run: {mean_wall:.0f} s{load}.",
            "",
            "| check | tolerance | " + " | ".join(f"seed {s}" for s in seeds) + " | pass |",
            "|---|---|" + "---|" * len(seeds) + "---|",
        ]
        for _, name, tol, values, passes in crow:
            cells = [name.replace("|", "\\|"), tol, *values, passes]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    page.write_text("\n".join(lines))


def _range(values: list) -> str:
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not nums:
        return "–"
    lo, hi = min(nums), max(nums)
    return _fmt(lo) if _fmt(lo) == _fmt(hi) else f"{_fmt(lo)} to {_fmt(hi)}"


def ledger_rows(runs: list[dict], seeds: list[int]):
    """Rows (chapter, check, paper, reported, first seed's value, range, tolerance, passes).

    The paper (a citation key) and its reported number are those the check cell gave
    `udl_jax.checks` (``paper=``, ``reported=``); None where the check names none.
    """
    by = {(r["chapter"], r["seed"]): r for r in runs}
    for chapter in sorted({r["chapter"] for r in runs}):
        records: dict[str, list] = {}
        for s in seeds:
            for c in by[(chapter, s)]["checks"]:
                records.setdefault(c["name"], []).append(c)
        for name, cs in records.items():
            first = cs[0]
            values = [c["value"] for c in cs]
            yield (chapter, name, first.get("paper"), first.get("reported"),
                   _fmt(first["value"]), _range(values), _tolerance(first),
                   f"{sum(c['passed'] for c in cs)}/{len(seeds)}")


def write_ledger(runs, seeds, page: Path) -> None:
    """The claims ledger page: per chapter, each check with its paper and measured value."""
    rows = list(ledger_rows(runs, seeds))
    cited = [r for r in rows if r[2]]
    full = f"{len(seeds)}/{len(seeds)}"
    lines = [
        "# Claims ledger",
        "",
        "Every claim the book checks, chapter by chapter: the paper it reproduces (where it",
        "reproduces one), the number that paper reports, what the chapter measures, and how",
        "often the check passes when the chapter is rerun under other seeds. The rows are the",
        "chapters' check cells (`udl_jax.checks`, with `paper=` and `reported=`), collected by",
        "`make robustness` (`tools/robustness.py`), which also writes",
        "{doc}`robustness`. A check without a paper tests the book's own machinery (an identity,",
        "a closed form, code against an independent reference).",
        "",
        f"**{len(rows)} checks, {len(cited)} of them of published claims; "
        f"{sum(r[7] == full for r in rows)} pass under all {len(seeds)} seeds "
        f"({', '.join(str(s) for s in seeds)}).**",
        f"*Measured* is seed {seeds[0]}'s value; the range is over all seeds. A paper's number",
        "is often for a larger experiment than the chapter's: the chapter's text says where",
        "and why its numbers differ from the paper's.",
        "",
    ]
    by_chapter: dict[str, list] = {}
    for r in rows:
        by_chapter.setdefault(r[0], []).append(r)
    for chapter, crow in by_chapter.items():
        lines += [*_chapter_heading(chapter), ""]
        lines += [
            "| claim | paper | paper reports | measured | over seeds | tolerance | pass |",
            "|---|---|---|---|---|---|---|",
        ]
        for _, name, paper, reported, value, rng, tol, passes in crow:
            cells = [
                name.replace("|", "\\|"),
                f"{{cite:p}}`{paper}`" if paper else "–",
                (reported or "–").replace("|", "\\|"),
                value, rng, tol, passes,
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    page.write_text("\n".join(lines))


def merge_runs(previous: list[dict], new: list[dict], seeds, chapters) -> list[dict]:
    """The new runs, plus the previous record's runs of other existing chapters.

    Args:
      previous: runs read from an earlier ``robustness.json`` (may be empty).
      new: the runs just made.
      seeds: the seeds of the new runs; a previous chapter is kept only if it was run under
        exactly these seeds, so that every row of the table has a value per seed.
      chapters: the stems of the chapters that exist now.

    Returns:
      The merged runs, in chapter then seed order.
    """
    ran = {r["chapter"] for r in new}
    kept: dict[str, list[dict]] = {}
    for r in previous:
        if r["chapter"] not in ran and r["chapter"] in chapters:
            kept.setdefault(r["chapter"], []).append(r)
    old = [r for rs in kept.values() if sorted(x["seed"] for x in rs) == sorted(seeds) for r in rs]
    return sorted([*old, *new], key=lambda r: (r["chapter"], list(seeds).index(r["seed"])))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        default=sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--jobs", type=int, default=2, help="notebooks run at once (default 2)")
    parser.add_argument("--no-page", action="store_true", help="do not write book/robustness.*")
    parser.add_argument("--page-only", action="store_true",
                        help="run nothing: rewrite the pages from book/robustness.json")
    args = parser.parse_args(argv)
    if args.page_only:
        runs = json.loads((ROOT / "book" / "robustness.json").read_text())
        seeds = sorted({r["seed"] for r in runs})
        write_page(runs, seeds, ROOT / "book" / "robustness.md", args.jobs)
        write_ledger(runs, seeds, ROOT / "book" / "claims.md")
        print_table(runs, seeds)
        return 0
    for nb in args.notebooks:
        parameters_cell(nb)  # fail fast, naming the chapter, if a parameters cell is missing
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [(nb.resolve(), s) for nb in args.notebooks for s in args.seeds]
        with ThreadPoolExecutor(args.jobs) as pool:
            runs = list(pool.map(lambda j: run_one(j[0], j[1], Path(tmp), {}), jobs))
    for r in runs:
        if r["status"] == "error":
            print(f"\n{r['chapter']} seed {r['seed']}: the run broke before its check cell:\n"
                  f"{r['error']}\n", file=sys.stderr)
    for r in runs:
        passed = sum(c["passed"] for c in r["checks"])
        print(f"{r['chapter']:<32} seed {r['seed']:>5}  {r['status']:<13} {r['wall_s']:6.1f} s  "
              f"{passed}/{len(r['checks'])} checks passed")
    print()
    print_table(runs, args.seeds)
    if not args.no_page:
        record = ROOT / "book" / "robustness.json"
        previous = json.loads(record.read_text()) if record.exists() else []
        chapters = {p.stem for p in (ROOT / "notebooks").glob("[0-9]*.ipynb")}
        merged = merge_runs(previous, runs, args.seeds, chapters)
        write_page(merged, args.seeds, ROOT / "book" / "robustness.md", args.jobs)
        write_ledger(merged, args.seeds, ROOT / "book" / "claims.md")
        record.write_text(json.dumps(merged, indent=1) + "\n")
        print(f"\nwrote {ROOT / 'book' / 'robustness.md'} and claims.md")
    bad = [r for r in runs if r["status"] != "ok"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
