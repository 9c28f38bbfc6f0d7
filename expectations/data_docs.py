"""Offline Data Docs: GE's pages with their scripts, stylesheets and fonts shipped next to them.

Great Expectations 1.24 renders Data Docs that load jQuery, Bootstrap, bootstrap-table, the
bootstrap datepicker, bootstrap-dark, Font Awesome and Vega from CDNs (its templates
``render/view/templates/{page,index_page,js_script_imports}.j2``) and its logo from S3. Opened
without internet (air-gapped privacy teams) every page is unstyled and the index lists no
validation at all: bootstrap-table builds that list in the browser.

So wasure ships those files, at the exact versions GE references (npm packages; the CDN URLs
``vega@5`` / ``vega-lite@5`` / ``vega-embed@6`` are pinned here to the newest 5.x / 6.x release),
under ``expectations/static/vendor/`` with their licences, each pinned by sha256 (``PACKAGES``).
After a gate builds its site, ``make_offline`` copies them to ``<site>/static/vendor/`` (the site
stays self-contained: it can be moved or zipped) and rewrites every CDN link of every page to a
relative one. Links to web pages (``<a href>``) are left alone.

Maintenance (a GE upgrade that references other versions): update ``PACKAGES`` / ``CDN_ASSETS``
and run ``python -m expectations.data_docs fetch`` (npm registry; or ``--tarballs DIR`` with
files from ``npm pack``), which checks every tarball and file against its sha256 before writing.
``python -m expectations.data_docs check`` verifies the committed files.
"""
from __future__ import annotations

import hashlib
import io
import re
import shutil
import sys
import tarfile
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

VENDOR_DIR = Path(__file__).resolve().parent / "static" / "vendor"
SITE_VENDOR = "static/vendor"          # relative to a Data Docs site root
NPM_REGISTRY = "https://registry.npmjs.org"


@dataclass(frozen=True)
class Package:
    """One npm package version: its tarball's sha256 and the files wasure takes from it."""

    name: str
    version: str
    licence: str                  # SPDX expression of package.json
    tarball_sha256: str
    files: dict                   # path inside the package -> sha256

    @property
    def folder(self) -> str:      # under VENDOR_DIR, e.g. "fontawesome-free-6.6.0"
        return f"{self.name.split('/')[-1]}-{self.version}"

    @property
    def tarball_url(self) -> str:
        return f"{NPM_REGISTRY}/{self.name}/-/{self.name.split('/')[-1]}-{self.version}.tgz"


PACKAGES = (
    Package("jquery", "3.7.1", "MIT", "68a9f787516da47c680e09c187bcbac4536b6f85d90eb882844e12919e583f53", {
        "dist/jquery.min.js": "fc9a93dd241f6b045cbff0481cf4e1901becd0e12fb45166a8f17f95823f0b1a",
        "LICENSE.txt": "d4db9ebe6f29f5168eac45ad713f055623ac5d0dcd5ba92da23d650ae012020d"}),
    # No licence file in the tarball: vendor/popper.js-1.12.9/LICENSE is written by wasure (MIT).
    Package("popper.js", "1.12.9", "MIT", "4233fad2da34a2a6bc982e7e02c85c14180af075853d97d7e3bfa7124c853cbf", {
        "dist/umd/popper.min.js": "a52f7aa54d7bcaafa056ee0a050262dfc5694ae28dee8b4cac3429af37ff0d66"}),
    Package("bootstrap", "4.3.1", "MIT", "b109c069bbb7cee57c3ddffb65d8481db5fe7e428b6d9b1ca502119a0429bd16", {
        "dist/css/bootstrap.min.css": "60b19e5da6a9234ff9220668a5ec1125c157a268513256188ee80f2d2c8d8d36",
        "dist/js/bootstrap.min.js": "0a34a87842c539c1f4feec56bba982fd596b73500046a6e6fe38a22260c6577b",
        "LICENSE": "074d99b8c25d13649dac52080900ee8c8d2373d07ea3f4fb67bd2bf79aa8cc72"}),
    Package("bootstrap-table", "1.19.1", "MIT", "80f84cbf2f8f92e0d5444a82fb99495ab8a286b5cdb0594102e568eb9d9fa69a", {
        "dist/bootstrap-table.min.css": "643f536f6982af4d7287af23f89ad457dd7e4a82f9c695330a112b0881c30a4a",
        "dist/bootstrap-table.min.js": "06a571a9beb50bd5ddd60517159775dfec1f3e798fff38fb117ae2350dc9ba9d",
        "dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
            "111f68d31d1bdd714f9503bf5f4e162e0739c363e4ff2feef950d39e78266ffc",
        "LICENSE": "fb50e42cb539382385f8d66572fef8ec08a34dd7dc00ba7a5ce0668d225dc35b"}),
    # GE takes the filter-control stylesheet from 1.19.0 (and the rest of bootstrap-table from 1.19.1).
    Package("bootstrap-table", "1.19.0", "MIT", "d3b319ebdfaff6ae6d501d2c9e6afc39dab71e26c22fb104b8afcc11e6d0599f", {
        "dist/extensions/filter-control/bootstrap-table-filter-control.css":
            "b3ff051168696ec9ae3cf8616c59a6db8734fb282863b23edfd8c0f93eb5c4f0",
        "dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
            "2c707bb54520737762a76f2238e87627993fb63bcef6d789a21a4957f393fa1c",
        "LICENSE": "fb50e42cb539382385f8d66572fef8ec08a34dd7dc00ba7a5ce0668d225dc35b"}),
    Package("bootstrap-datepicker", "1.9.0", "Apache-2.0", "342bd95b65db796e0ac35ad9296edbe6733daefc9869b2e5b27286d423e38146", {
        "dist/css/bootstrap-datepicker.min.css": "b22c8ea45fe905650f8087108b5ed32c1923bcd80d400adc9b0241f18be40208",
        "dist/js/bootstrap-datepicker.min.js": "6ea55ea86749ee1fe560fabac6b3effd81b33046fa74dc657e24d41d28110a9f",
        "LICENSE": "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"}),
    # GE links the unminified bootstrap-prefers-dark.css (880 kB); the same package's minified twin
    # (150 kB) is shipped instead.
    Package("@forevolve/bootstrap-dark", "1.1.0", "MIT", "20b089d52bc2ae80424fc43e5263023e96bd8479e7c5d346b8766c1b792a1cfd", {
        "dist/css/bootstrap-prefers-dark.min.css": "424070f1f798087a68c110a776228f9eaae5406df143940faa67d77344293ac8",
        "LICENSE": "43be5d79d2ec3d6d876e1874d27506cbe55024b18afc55f1fc830aaaedc0313d"}),
    # Fonts: SIL OFL 1.1; CSS: MIT (LICENSE.txt). The CSS loads ../webfonts/*.woff2, *.ttf.
    Package("@fortawesome/fontawesome-free", "6.6.0", "CC-BY-4.0 AND OFL-1.1 AND MIT",
            "cf0b890ab2b68d3c4ea0f93ceb81cc24b956cccf9db36c63be044a672bd3b4dd", {
        "css/all.min.css": "e5e202e3c899507992952533f57b634722b69b34241d271963559d31aa33ef81",
        "webfonts/fa-brands-400.ttf": "bc844b5b02d3f3adabb514de4e0c0208252d3123413bd03f6287fa446acee859",
        "webfonts/fa-brands-400.woff2": "c411f11975d26eb04cd2aa3c071181d4b18e489f1fb97060d4176a3531dfb36e",
        "webfonts/fa-regular-400.ttf": "64f9fb623681f112261e9a2f97826782439f3925dea8f44a57d1e4db95ba6cfd",
        "webfonts/fa-regular-400.woff2": "c732f106e91bc618767fbac8e2c7b27e5c736d477b2bb4fb83f597a43198c33c",
        "webfonts/fa-solid-900.ttf": "31f099c13f6e4ba05f1b471bf170cb5493249474222917372de3ca5cf29e6a1a",
        "webfonts/fa-solid-900.woff2": "1f0189e087fcefbf654fad74a3a06668b782c01353a61d5c0b7f0bf23e33c020",
        "webfonts/fa-v4compatibility.ttf": "a6274a12fd3f5f1ea05fc9b4677959b31fd101fdac4f0d09c17159c414d36d23",
        "webfonts/fa-v4compatibility.woff2": "2aca24b35bd41474dcc5e7fb5f11ec43fa06e3ac1d0035ad41108fa6b30b0871",
        "LICENSE.txt": "9b914eae88817d63b576eab5aafde7068c7a1abae125d7cdfb034f1da43a9afc"}),
    # No licence file in the tarball: vendor/vega-5.33.1/LICENSE is written by wasure (BSD-3-Clause).
    Package("vega", "5.33.1", "BSD-3-Clause", "1b8504b6731c5311be3269c4d84ca996a5cc293bc772283293ede20c490e16c3", {
        "build/vega.min.js": "463f3db6a40b20e9747b4ed38f37ed0add508838f9141b1cf8366784b07b30c8"}),
    Package("vega-lite", "5.23.0", "BSD-3-Clause", "e4cbfdd8f6f1abe381c59cd558fd6a559c12b1496bfdf2e0c3295263a40fe4da", {
        "build/vega-lite.min.js": "58c27358e26f2d319cf62f45bc17a4c8362f08645001df2ec8d341eee4097c7f",
        "LICENSE": "f618900fd0d64046963b29f40590cdd1e341a2f41449f99110d82fd81fea808c"}),
    Package("vega-embed", "6.29.0", "BSD-3-Clause", "ecf1ee709c2bac9e0a4ead6908114b05b62c71493e10a8a4308109bb070f8eb1", {
        "build/vega-embed.min.js": "12d02acfbe3ec59ef9a37dd4822a2e04e2961b5bbb671bbe661d2221715b99da",
        "LICENSE": "32df67148f0fc3db0eb9e263a7b75d07f1eb14c61955005a4a39c6918d10d137"}),
)

# Every CDN URL in GE 1.24's page templates -> the file under VENDOR_DIR that replaces it.
CDN_ASSETS = {
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery-3.7.1/dist/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper.js-1.12.9/dist/umd/popper.min.js",
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap-4.3.1/dist/css/bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap-4.3.1/dist/js/bootstrap.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": "bootstrap-table-1.19.1/dist/bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": "bootstrap-table-1.19.1/dist/bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
        "bootstrap-table-1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css":
        "bootstrap-table-1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
        "bootstrap-table-1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css":
        "bootstrap-datepicker-1.9.0/dist/css/bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js":
        "bootstrap-datepicker-1.9.0/dist/js/bootstrap-datepicker.min.js",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css":
        "bootstrap-dark-1.1.0/dist/css/bootstrap-prefers-dark.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": "fontawesome-free-6.6.0/css/all.min.css",
    "https://cdn.jsdelivr.net/npm/vega@5": "vega-5.33.1/build/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite-5.23.0/build/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed-6.29.0/build/vega-embed.min.js",
}
# GE's logos on S3 -> its own copy in the site's static/images/ (it has no dark logo: the light one
# stands in for the dark-mode navbar background).
GE_IMAGES = {
    "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png": "static/images/logo-long.png",
    "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/full_logo_dark.png": "static/images/logo-long.png",
}

_ASSET_TAG = re.compile(r"<(?:script|link|img)\b[^>]*>", re.IGNORECASE)
_TAG_URL = re.compile(r"""\b(src|href)=(["'])(https?://[^"']+)\2""", re.IGNORECASE)
# Subresource-integrity attributes force a CORS fetch, which file:// pages cannot make; the files
# were checked against their sha256 when vendored instead.
_SRI_ATTRS = re.compile(r"""\s+(?:integrity|crossorigin)=(["'])[^"']*\1""", re.IGNORECASE)
_SITE_STATIC = re.compile(r"""\b(src|href)=(["'])(?:\./|(?:\.\./)*)static/""", re.IGNORECASE)
_CSS_URL = re.compile(r"""url\(\s*(["']?)(https?://[^"')\s]+)\1\s*\)""", re.IGNORECASE)


def make_offline(site_dir: str | Path) -> list[str]:
    """Copy the vendored assets into ``<site>/static/vendor/`` and point every page at them.

    Returns the external asset URLs left in place (none with GE 1.24); they are also reported as
    a warning, since a GE upgrade may add one: the pages still work online, never offline."""
    site = Path(site_dir)
    missing = [p.folder for p in PACKAGES if not (VENDOR_DIR / p.folder).is_dir()]
    if missing:
        warnings.warn(f"Data Docs under {site} keep their CDN links: {VENDOR_DIR} lacks {', '.join(missing)} "
                      "(see expectations/data_docs.py)", stacklevel=2)
        return sorted(CDN_ASSETS)
    shutil.copytree(VENDOR_DIR, site / SITE_VENDOR, dirs_exist_ok=True)
    left: set[str] = set()
    for page in site.rglob("*.html"):
        if SITE_VENDOR in page.relative_to(site).as_posix():
            continue
        to_root = "../" * (len(page.relative_to(site).parts) - 1)
        text = page.read_text(encoding="utf-8")
        new = _rewrite(text, to_root, left)
        if new != text:
            page.write_text(new, encoding="utf-8")
    if left:
        warnings.warn(f"Data Docs under {site} still load {len(left)} asset(s) from the internet: "
                      f"{', '.join(sorted(left))} (add them to expectations/data_docs.py)", stacklevel=2)
    return sorted(left)


def copy_site(site_dir: str | Path, uri: str, spark) -> None:
    """Copy a built site to ``uri`` (hdfs://, s3a://...) through the Spark session's Hadoop
    FileSystem: the same credentials and configuration as the lake's tables."""
    jvm, conf = spark.sparkContext._jvm, spark.sparkContext._jsc.hadoopConfiguration()
    target = jvm.org.apache.hadoop.fs.Path(uri)
    fs = target.getFileSystem(conf)
    for path in sorted(Path(site_dir).rglob("*")):
        if path.is_file():
            fs.copyFromLocalFile(False, True, jvm.org.apache.hadoop.fs.Path(str(path)),
                                 jvm.org.apache.hadoop.fs.Path(f"{uri.rstrip('/')}/{path.relative_to(site_dir).as_posix()}"))


def _local(url: str, to_root: str) -> str | None:
    if url in CDN_ASSETS:
        return f"{to_root}{SITE_VENDOR}/{CDN_ASSETS[url]}"
    image = GE_IMAGES.get(url.split("?", 1)[0])      # GE appends ?d=<timestamp> to bust caches
    return f"{to_root}{image}" if image else None


def _rewrite(html: str, to_root: str, left: set[str]) -> str:
    def tag(match: re.Match) -> str:
        text = match.group(0)
        url_match = _TAG_URL.search(text)
        if not url_match:
            # GE's validation pages link the favicon one "../" short of the site root.
            return _SITE_STATIC.sub(lambda m: f"{m.group(1)}={m.group(2)}{to_root}static/", text)
        local = _local(url_match.group(3), to_root)
        if local is None:
            left.add(url_match.group(3))
            return text
        quote = url_match.group(2)
        text = text.replace(url_match.group(0), f"{url_match.group(1)}={quote}{local}{quote}")
        return _SRI_ATTRS.sub("", text)

    def css_url(match: re.Match) -> str:
        local = _local(match.group(2), to_root)
        if local is None:
            left.add(match.group(2))
            return match.group(0)
        return f"url('{local}')"

    return _CSS_URL.sub(css_url, _ASSET_TAG.sub(tag, html))


# ------------------------------------------------------------------ maintenance: fetch and check

def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_vendor(vendor_dir: Path = VENDOR_DIR) -> list[str]:
    """Problems with the vendored files (missing, or not the pinned bytes); empty when all is well."""
    problems = []
    for package in PACKAGES:
        for path, digest in package.files.items():
            file = vendor_dir / package.folder / path
            if not file.is_file():
                problems.append(f"{package.folder}/{path}: missing")
            elif _sha256(file.read_bytes()) != digest:
                problems.append(f"{package.folder}/{path}: sha256 differs from the pin")
    return problems


def fetch_vendor(vendor_dir: Path = VENDOR_DIR, tarballs: Path | None = None) -> None:
    """(Re)write the vendored files from the npm tarballs, each checked against its pin first."""
    for package in PACKAGES:
        # `npm pack @scope/name@version` writes scope-name-version.tgz
        local = tarballs / f"{package.name.lstrip('@').replace('/', '-')}-{package.version}.tgz" if tarballs else None
        if local is not None and local.is_file():
            data = local.read_bytes()
        else:
            with urllib.request.urlopen(package.tarball_url, timeout=120) as response:
                data = response.read()
        if _sha256(data) != package.tarball_sha256:
            raise ValueError(f"{package.name}@{package.version}: tarball sha256 differs from the pin")
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            contents = {path: tar.extractfile(f"package/{path}").read() for path in package.files}
        for path, content in contents.items():
            if _sha256(content) != package.files[path]:
                raise ValueError(f"{package.name}@{package.version}: {path} sha256 differs from the pin")
            target = vendor_dir / package.folder / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        print(f"{package.folder}: {len(contents)} file(s)")


def main(argv: list[str]) -> int:
    if argv[:1] == ["fetch"]:
        tarballs = Path(argv[argv.index("--tarballs") + 1]) if "--tarballs" in argv else None
        fetch_vendor(tarballs=tarballs)
    problems = check_vendor()
    print("\n".join(problems) or f"{sum(len(p.files) for p in PACKAGES)} vendored files match their pins")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
