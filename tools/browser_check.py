"""The built site as a reader meets it: headless Chromium on every chapter page, offline.

Usage (after `make book`; `make browser-test` runs both):

    python tools/browser_check.py [--site _build/html] [--screenshots _build/screenshots]

Serves the site with Python's http.server on 127.0.0.1 (a free port), opens it in Debian's
Chromium through Playwright (``executable_path``: Playwright's own browser download is never
used), and aborts every request that does not go to 127.0.0.1, so the math must come from the
site's own MathJax. For the intro page and every chapter page (``notebooks/*.html``):

* math: every ``.math`` element typeset by MathJax (contains ``mjx-container``) and no raw TeX
  (``\\(``, ``\\[``, ``$$``) left in the page's text outside code;
* images: every ``<img>`` loaded (naturalWidth > 0);
* console: no console error, no uncaught exception, no failed or blocked request;
* at 1280 px: every figure image (an ``<img>`` in the article) no wider than the article column,
  and not shrunk by more than 5 % from its natural width (a figure made wider than the column
  is scaled down, and its text with it);
* at 400 px: no horizontal page overflow (``scrollWidth <= innerWidth``);
* citations: each in-text citation's text equals the label of the bibliography entry it links to;
* one visible search field per page;

and the search page (``search.html?q=kernel``) lists chapter pages. Screenshots of two
chapters (top of page at 1280 and 400 px, first figure at 1280 px) go to ``--screenshots``,
and each page's transferred bytes by resource type are printed. Exits 1 if a check fails; with
``--report-only`` it reports and exits 0. Where Chromium or Playwright is missing it prints
"browser test skipped: ..." and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import re
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

try:
    from playwright.sync_api import Error as PlaywrightError
except ImportError:  # main() then skips the test with a message
    PlaywrightError = Exception

ROOT = Path(__file__).resolve().parents[1]
LOCAL_HOSTS = {"127.0.0.1"}
WIDE, NARROW = 1280, 400
SHRINK_TOLERANCE = 0.05  # a figure may render at most 5 % narrower than its natural width
SEARCH_TERM = "kernel"
PAGE_TIMEOUT_MS = 30_000
SCREENSHOT_PAGES = ("notebooks/02_splines.html", "notebooks/08_edge_of_stability.html")

# Raw TeX a reader would see if MathJax did not run: \( ... \), \[ ... \] and $$ ... $$.
_RAW_TEX = re.compile(r"\\\((?:.{0,80}?\\\))?|\\\[(?:.{0,80}?\\\])?|\$\$(?:.{0,80}?\$\$)?", re.S)


# --------------------------------------------------------------------------- pure helpers


def is_local_url(url: str) -> bool:
    """Whether the browser may fetch ``url``: the local server, or no network at all."""
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    return parts.scheme in ("http", "https") and parts.hostname in LOCAL_HOSTS


def find_raw_tex(text: str) -> list[str]:
    """Snippets of raw TeX delimiters in rendered page text (empty when all math typeset)."""
    return [" ".join(m.group(0).split())[:60] for m in _RAW_TEX.finditer(text)]


def chapter_pages(site: Path) -> list[str]:
    """Site-relative paths of the pages checked: the intro page and every chapter page."""
    pages = sorted(p.relative_to(site).as_posix() for p in (site / "notebooks").glob("*.html"))
    intro = site / "book" / "intro.html"
    return (["book/intro.html"] if intro.exists() else []) + pages


def figure_problems(images: list[dict], column: float) -> list[str]:
    """Problems of a page's article images at the wide viewport.

    ``images``: dicts with ``src``, ``natural`` and ``rendered`` widths (CSS px); ``column``:
    the article column's content width. An image is too wide if it renders wider than the
    column, and shrunk if it renders more than SHRINK_TOLERANCE narrower than its natural width.
    """
    problems = []
    for img in images:
        name = img["src"].rsplit("/", 1)[-1][:24]
        natural, rendered = img["natural"], img["rendered"]
        if natural <= 0:
            continue  # reported as not loaded
        if rendered > column + 0.5:
            problems.append(
                f"figure {name}: rendered {rendered:.0f} px, wider than the {column:.0f} px column"
            )
        elif rendered < natural * (1 - SHRINK_TOLERANCE):
            problems.append(
                f"figure {name}: natural width {natural} px shrunk to {rendered:.0f} px "
                f"({rendered / natural:.0%}) to fit the {column:.0f} px column"
            )
    return problems


def citation_problems(citations: list[dict], labels: dict[str, str]) -> list[str]:
    """In-text citations whose text differs from their bibliography entry's label.

    ``citations``: dicts with ``text`` (the link's text), ``target`` (the bibliography entry's
    id) and ``before`` (the text just before the link); ``labels``: entry id -> label as shown
    in the bibliography. A parenthetical citation links "Zhang et al., 2017", the whole label;
    a textual one reads "Zhang et al. [2017]" and links only the year, so there the names must
    stand right before the link.
    """
    problems = []
    for cite in citations:
        label = labels.get(cite["target"])
        text = " ".join(cite["text"].split())
        if label is None:
            problems.append(f"citation {text!r} links to #{cite['target']}, not an entry")
            continue
        if text == label:
            continue
        authors, _, year = label.rpartition(", ")
        before = " ".join(cite.get("before", "").split())
        if text == year and authors and before.rstrip(" [(").endswith(authors):
            continue
        problems.append(f"citation {text!r} but the bibliography labels it [{label}]")
    return problems


def search_problems(result_hrefs: list[str]) -> list[str]:
    """Problems of the search results page: it must list at least one chapter page."""
    chapters = [h for h in result_hrefs if "notebooks/" in h]
    if not chapters:
        return [f"search for {SEARCH_TERM!r} lists no chapter page ({len(result_hrefs)} results)"]
    return []


def format_bytes(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


@dataclass
class PageReport:
    page: str
    problems: list[str] = field(default_factory=list)
    bytes_by_type: dict[str, int] = field(default_factory=dict)
    math: int = 0
    images: int = 0


def summarize(reports: list[PageReport]) -> tuple[list[str], int]:
    """Lines of the final report, and the number of pages with a problem."""
    lines, failed = [], 0
    for r in reports:
        status = "FAIL" if r.problems else "ok  "
        failed += bool(r.problems)
        weight = sum(r.bytes_by_type.values())
        lines.append(
            f"{status} {r.page}  ({r.math} math, {r.images} images, {format_bytes(weight)})"
        )
        lines.extend(f"       - {p}" for p in r.problems)
    return lines, failed


# --------------------------------------------------------------------------- the browser

# Text of the page outside code, scripts and typeset math (where raw TeX would show).
_JS_VISIBLE_TEXT = """() => {
  const skip = 'pre, code, script, style, textarea, mjx-container, mjx-assistive-mml, .MathJax';
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const out = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (!n.parentElement.closest(skip)) out.push(n.textContent);
  }
  return out.join(' ');
}"""

_JS_WAIT_MATH = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const math = [...document.querySelectorAll('.math')];
  return {total: math.length,
          typeset: math.filter(m => m.querySelector('mjx-container')).length,
          mathjax: !!(window.MathJax && MathJax.version)};
}"""

_JS_LOAD_IMAGES = """async () => {
  const imgs = [...document.images];
  imgs.forEach(i => { i.loading = 'eager'; });
  await Promise.all(imgs.map(i => i.complete ? null : new Promise(r => {
    i.addEventListener('load', r, {once: true});
    i.addEventListener('error', r, {once: true});
    setTimeout(r, 10000);
  })));
  const article = document.querySelector('article.bd-article') || document.body;
  const cs = getComputedStyle(article);
  const column = article.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
  return {
    column: column,
    all: imgs.map(i => ({src: i.currentSrc || i.src, natural: i.naturalWidth})),
    article: [...article.querySelectorAll('img')].map(i => ({
      src: i.currentSrc || i.src, natural: i.naturalWidth,
      rendered: i.getBoundingClientRect().width})),
  };
}"""

_JS_CITATIONS = """() => [...document.querySelectorAll('a[href*="bibliography.html#"]')]
  .map(a => {
    let before = '';
    for (let n = a.previousSibling; n && before.length < 120; n = n.previousSibling) {
      before = n.textContent + before;
    }
    return {text: a.textContent, target: a.getAttribute('href').split('#')[1],
            before: before.slice(-120)};
  })"""

_JS_BIB_LABELS = """() => Object.fromEntries([...document.querySelectorAll('.citation')]
  .map(c => [c.id, (c.querySelector('.label') || c).textContent.replace(/^\\[|\\]$/g, '')
  .trim()]))"""

_JS_SEARCH_FIELDS = """() => [...document.querySelectorAll(
  'input[type=search], .search-button-field')].filter(e => e.offsetParent !== null).length"""

_JS_OVERFLOW = """() => {
  const w = window.innerWidth;
  const over = [];
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.right > w + 1 && r.width > 0 && getComputedStyle(el).position !== 'fixed') {
      let inside = false;
      for (let p = el.parentElement; p; p = p.parentElement) {
        const o = getComputedStyle(p).overflowX;
        if (o === 'auto' || o === 'scroll' || o === 'hidden') { inside = true; break; }
      }
      if (!inside) over.push((el.tagName.toLowerCase() + '.' + [...el.classList].join('.'))
        .slice(0, 60) + ' right=' + Math.round(r.right));
    }
  }
  return {scroll: document.documentElement.scrollWidth, width: w, offenders: over.slice(-3)};
}"""


class BrowserUnavailable(RuntimeError):
    """Chromium is installed but does not start (the site is not at fault)."""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no per-request lines on stderr
        pass


@contextlib.contextmanager
def serve(site: Path):
    """Serve ``site`` on 127.0.0.1 at a free port; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _Recorder:
    """Console errors, uncaught exceptions, failed requests and bytes of one page load."""

    def __init__(self):
        self.errors: list[str] = []
        self.bytes_by_type: dict[str, int] = {}

    def reset(self):
        self.errors, self.bytes_by_type = [], {}

    def attach(self, page):
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught exception: {exc}"))
        page.on("requestfailed", self._failed)
        page.on("requestfinished", self._finished)

    def _console(self, msg):
        if msg.type == "error":
            self.errors.append(f"console error: {msg.text[:200]}")

    def _failed(self, request):
        reason = request.failure or "failed"
        if "ERR_BLOCKED_BY_CLIENT" in reason or "ERR_FAILED" in reason:
            reason = "blocked: not on 127.0.0.1" if not is_local_url(request.url) else reason
        self.errors.append(f"request {reason}: {request.url[:120]}")

    def _finished(self, request):
        response = request.response()
        if response is not None and response.status >= 400:
            self.errors.append(f"HTTP {response.status}: {request.url[:120]}")
        try:
            size = request.sizes()["responseBodySize"]
        except Exception:  # the page navigated away before the sizes were known
            size = 0
        kind = request.resource_type
        self.bytes_by_type[kind] = self.bytes_by_type.get(kind, 0) + max(size, 0)


def _route(route):
    if is_local_url(route.request.url):
        route.continue_()
    else:
        route.abort("blockedbyclient")


def _check_wide(page, base, name, r, rec, labels, shots) -> None:
    """The checks of one page at the wide viewport, into its report ``r``."""
    page.goto(base + name, wait_until="load")
    math = page.evaluate(_JS_WAIT_MATH)
    imgs = page.evaluate(_JS_LOAD_IMAGES)
    _settle(page)
    r.math, r.images = math["total"], len(imgs["all"])
    if math["total"] and not math["mathjax"]:
        r.problems.append("MathJax did not load: math is shown as raw TeX")
    elif math["typeset"] < math["total"]:
        r.problems.append(
            f"math: {math['total'] - math['typeset']} of {math['total']} formulas not typeset"
        )
    raw = find_raw_tex(page.evaluate(_JS_VISIBLE_TEXT))
    if raw:
        r.problems.append(f"raw TeX in the text ({len(raw)}x), e.g. {raw[0]!r}")
    for img in imgs["all"]:
        if img["natural"] <= 0:
            r.problems.append(f"image not loaded: {img['src'][-80:]}")
    r.problems += figure_problems(imgs["article"], imgs["column"])
    r.problems += citation_problems(page.evaluate(_JS_CITATIONS), labels)
    boxes = page.evaluate(_JS_SEARCH_FIELDS)
    if boxes != 1:
        r.problems.append(f"{boxes} visible search fields, not 1")
    r.problems += rec.errors
    r.bytes_by_type = dict(rec.bytes_by_type)
    if name in SCREENSHOT_PAGES:
        stem = Path(name).stem
        page.screenshot(path=shots / f"{stem}_{WIDE}.png")
        fig = page.query_selector("article.bd-article figure img, .cell_output img")
        if fig is not None:
            fig.scroll_into_view_if_needed()
            page.screenshot(path=shots / f"{stem}_{WIDE}_figure.png")


def _check_narrow(page, base, name, r, shots) -> None:
    """The check of one page at the narrow viewport: no sideways scrolling."""
    page.goto(base + name, wait_until="load")
    page.evaluate(_JS_WAIT_MATH)
    page.evaluate(_JS_LOAD_IMAGES)
    over = page.evaluate(_JS_OVERFLOW)
    if over["scroll"] > over["width"]:
        r.problems.append(
            f"at {NARROW} px the page scrolls sideways: {over['scroll']} px wide; "
            f"widest: {'; '.join(over['offenders']) or 'unknown'}"
        )
    if name in SCREENSHOT_PAGES:
        page.screenshot(path=shots / f"{Path(name).stem}_{NARROW}.png")


def _settle(page, timeout_ms: int = 5000) -> None:
    """Wait (a bounded time) until no request has been in flight for 0.5 s."""
    try:
        page.wait_for_load_state("networkidle", timeout=timeout_ms)
    except PlaywrightError:
        pass  # a request still open is reported by the recorder if it fails


def check_site(site: Path, shots: Path, chromium: str, deadline: float) -> list[PageReport]:
    from playwright.sync_api import sync_playwright

    pages = chapter_pages(site)
    reports = {p: PageReport(p) for p in pages}
    shots.mkdir(parents=True, exist_ok=True)
    with serve(site) as base, sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        except PlaywrightError as exc:
            raise BrowserUnavailable(str(exc).splitlines()[0][:300]) from exc
        try:
            ctx = browser.new_context(viewport={"width": WIDE, "height": 900})
            ctx.route("**/*", _route)
            page = ctx.new_page()
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            rec = _Recorder()
            rec.attach(page)

            page.goto(base + "book/bibliography.html", wait_until="load")
            labels = page.evaluate(_JS_BIB_LABELS)

            for name in pages:
                if time.monotonic() > deadline:
                    reports[name].problems.append("not checked: time limit reached")
                    continue
                r = reports[name]
                rec.reset()
                try:
                    _check_wide(page, base, name, r, rec, labels, shots)
                except PlaywrightError as exc:
                    r.problems.append(f"check aborted: {str(exc).splitlines()[0][:200]}")
            ctx.close()

            ctx = browser.new_context(viewport={"width": NARROW, "height": 800})
            ctx.route("**/*", _route)
            page = ctx.new_page()
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            for name in pages:
                if time.monotonic() > deadline:
                    continue
                try:
                    _check_narrow(page, base, name, reports[name], shots)
                except PlaywrightError as exc:
                    reports[name].problems.append(
                        f"check at {NARROW} px aborted: {str(exc).splitlines()[0][:200]}"
                    )
            ctx.close()

            search = PageReport(f"search.html?q={SEARCH_TERM}")
            ctx = browser.new_context(viewport={"width": WIDE, "height": 900})
            ctx.route("**/*", _route)
            page = ctx.new_page()
            rec = _Recorder()
            rec.attach(page)
            try:
                _check_search(page, base, search)
            except PlaywrightError as exc:
                search.problems.append(f"check aborted: {str(exc).splitlines()[0][:200]}")
            search.problems += rec.errors
            ctx.close()
        finally:
            browser.close()
    return [reports[p] for p in pages] + [search]


def _check_search(page, base, search) -> None:
    """The search page: its results list chapter pages, and it shows one search field."""
    page.goto(base + search.page, wait_until="load")
    page.wait_for_function(
        "() => /Search finished|did not match/.test("
        "(document.querySelector('#search-results') || {}).textContent || '')",
        timeout=PAGE_TIMEOUT_MS,
    )
    hrefs = page.eval_on_selector_all(
        "#search-results a", "els => els.map(a => a.getAttribute('href'))"
    )
    search.problems += search_problems(hrefs)
    boxes = page.evaluate(_JS_SEARCH_FIELDS)
    if boxes != 1:
        search.problems.append(f"{boxes} visible search fields on the search page, not 1")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", type=Path, default=ROOT / "_build" / "html")
    parser.add_argument("--screenshots", type=Path, default=ROOT / "_build" / "screenshots")
    parser.add_argument("--chromium", default=None, help="browser binary (default: chromium)")
    parser.add_argument("--time-limit", type=float, default=240.0, help="seconds for all pages")
    parser.add_argument("--report-only", action="store_true", help="exit 0 even on failures")
    args = parser.parse_args(argv)

    chromium = args.chromium or shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None or not Path(chromium).is_file():
        print(
            f"browser test skipped: no chromium binary{f' at {chromium}' if chromium else ''} "
            "(Debian: apt-get install chromium)"
        )
        return 0
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        print("browser test skipped: the Python package playwright is not installed (run make)")
        return 0
    if not (args.site / "notebooks").is_dir():
        print(f"browser test: no built site at {args.site}; run `make book` first")
        return 1

    start = time.monotonic()
    try:
        reports = check_site(args.site, args.screenshots, chromium, start + args.time_limit)
    except BrowserUnavailable as exc:
        print(f"browser test skipped: {chromium} does not start: {exc}")
        return 0
    lines, failed = summarize(reports)
    print(f"browser test: {args.site} with {chromium}, offline (only 127.0.0.1 reachable)")
    print("\n".join(lines))
    pages = [r for r in reports if r.bytes_by_type]
    if pages:
        mean = sum(sum(r.bytes_by_type.values()) for r in pages) / len(pages)
        kinds: dict[str, int] = {}
        for r in pages:
            for k, v in r.bytes_by_type.items():
                kinds[k] = kinds.get(k, 0) + v
        by_kind = ", ".join(
            f"{k} {format_bytes(v // len(pages))}" for k, v in sorted(kinds.items())
        )
        print(f"mean bytes per page: {format_bytes(int(mean))} ({by_kind})")
    print(f"screenshots: {args.screenshots}; {time.monotonic() - start:.0f} s")
    print(f"browser-test: {len(reports) - failed} passed, {failed} failed")
    return 1 if failed and not args.report_only else 0


if __name__ == "__main__":
    sys.exit(main())
