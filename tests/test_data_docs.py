"""Offline Data Docs (expectations/data_docs.py): a gate's site loads nothing from the internet.

A real gate run (real Spark, real GE) writes its site; an HTML parser independent of the rewrite
then lists every script, stylesheet, image and CSS url() of every page, and of every stylesheet
those pages load: none may be http(s):// and every local one must exist. The browser side (the
index lists the validations, pages are styled, with the network blocked) is
tests/browser/test_airflow_form.py.
"""
import re
import warnings
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import great_expectations as gx
import pytest

from expectations import run_gate
from expectations.data_docs import CDN_ASSETS, PACKAGES, VENDOR_DIR, check_vendor, make_offline

_CSS_URL = re.compile(r"""url\(\s*["']?([^"')\s]+)["']?\s*\)""")


class _AssetRefs(HTMLParser):
    """(tag, url) of every script/stylesheet/icon/image a page loads, plus url()s of inline CSS."""

    def __init__(self):
        super().__init__()
        self.refs: list[tuple[str, str]] = []
        self.sri: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        url = attrs.get("src") if tag in ("script", "img") else attrs.get("href") if tag == "link" else None
        if url:
            self.refs.append((tag, url))
            if "integrity" in attrs or "crossorigin" in attrs:
                self.sri.append(url)
        for css in _CSS_URL.findall(attrs.get("style") or ""):
            self.refs.append(("style", css))
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.refs.extend(("style", url) for url in _CSS_URL.findall(data))


def _problems(site: Path) -> list[str]:
    problems, stylesheets = [], set()
    for page in sorted(site.rglob("*.html")):
        if "static/vendor" in page.as_posix():
            continue
        parser = _AssetRefs()
        parser.feed(page.read_text(encoding="utf-8"))
        problems += [f"{page.relative_to(site)}: integrity/crossorigin on {u}" for u in parser.sri]
        for tag, url in parser.refs:
            parts = urlsplit(url)
            if parts.scheme == "data":
                continue
            if parts.scheme or url.startswith("//"):
                problems.append(f"{page.relative_to(site)}: <{tag}> loads {url}")
                continue
            target = (page.parent / parts.path).resolve()
            if not target.is_file():
                problems.append(f"{page.relative_to(site)}: <{tag}> {url} does not exist")
            elif target.suffix == ".css":
                stylesheets.add(target)
    for css in sorted(stylesheets):             # e.g. Font Awesome's ../webfonts/*.woff2
        for url in _CSS_URL.findall(css.read_text(encoding="utf-8")):
            parts = urlsplit(url)
            if parts.scheme == "data":
                continue
            if parts.scheme or url.startswith("//"):
                problems.append(f"{css.relative_to(site)}: url({url})")
            elif not (css.parent / parts.path).is_file():
                problems.append(f"{css.relative_to(site)}: url({url}) does not exist")
    return problems


@pytest.fixture(scope="module")
def site(spark, tmp_path_factory):
    df = spark.createDataFrame([(1, "a"), (2, "b")], "id int, name string")
    docs = tmp_path_factory.mktemp("docs") / "gate"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)          # make_offline warns about any link left
        result = run_gate("offline-docs", [
            ("accounts", df, [gx.expectations.ExpectColumnValuesToNotBeNull(column="id")]),
            ("devices", df, [gx.expectations.ExpectColumnValuesToBeBetween(column="id", min_value=0, max_value=1)]),
        ], str(docs))
    assert Path(result.docs_index) == docs / "index.html"
    return docs


def test_gate_site_loads_nothing_from_the_internet(site):
    pages = list(site.rglob("*.html"))
    assert len([p for p in pages if "validations" in p.parts]) == 2          # one page per checked table
    text = "".join(p.read_text(encoding="utf-8") for p in pages)
    assert "cdn.jsdelivr.net" not in text and "unpkg.com" not in text and "amazonaws.com" not in text
    assert _problems(site) == []


def test_site_carries_the_pinned_assets_and_their_licences(site):
    assert check_vendor() == []                                 # the committed files are the pinned bytes
    assert check_vendor(site / "static" / "vendor") == []       # and so are the site's copies
    for package in PACKAGES:
        folder = site / "static" / "vendor" / package.folder
        assert any(f.name.startswith("LICENSE") for f in folder.iterdir()), folder
    # Every CDN URL maps to a vendored file.
    assert all((VENDOR_DIR / path).is_file() for path in CDN_ASSETS.values())


def test_a_later_gate_reuses_the_compiled_page_templates(spark, site, tmp_path, monkeypatch):
    """GE gives each view its own Jinja environment; the views of expectations.doc_views share
    compiled templates, so a gate after the first compiles none (~50 compilations a gate before)."""
    import jinja2

    compiled = []
    original = jinja2.Environment.compile
    monkeypatch.setattr(jinja2.Environment, "compile",
                        lambda self, source, name=None, *a, **k: compiled.append(name) or original(self, source, name, *a, **k))
    df = spark.createDataFrame([(1, "a")], "id int, name string")
    result = run_gate("offline-docs-again", [("accounts", df, [gx.expectations.ExpectColumnValuesToNotBeNull(column="id")])],
                      str(tmp_path / "gate"))
    assert result.success
    assert compiled == []
    pages = {p.name for p in (tmp_path / "gate").rglob("*.html") if "static" not in p.parts}
    assert "index.html" in pages and len([p for p in (tmp_path / "gate").rglob("*.html") if "validations" in p.parts]) == 1


def test_an_unknown_cdn_link_is_reported_and_left_alone(tmp_path):
    page = tmp_path / "index.html"
    page.write_text('<link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css"/>'
                    '<script src="https://cdn.example.org/new-lib@2.js" integrity="sha384-x" crossorigin="anonymous"></script>')
    with pytest.warns(UserWarning, match=r"still load 1 asset\(s\) from the internet: https://cdn.example.org/new-lib@2.js"):
        left = make_offline(tmp_path)
    assert left == ["https://cdn.example.org/new-lib@2.js"]
    html = page.read_text()
    assert 'href="static/vendor/bootstrap-4.3.1/dist/css/bootstrap.min.css"' in html
    assert 'src="https://cdn.example.org/new-lib@2.js" integrity="sha384-x"' in html
