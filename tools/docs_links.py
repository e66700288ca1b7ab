"""Offline check of the built documentation's internal links.

Every ``href``/``src`` of every HTML page that is not an external URL must
name a file of the build, and its ``#fragment`` an ``id`` in that file.
Exit code 1 lists the broken ones.

    python tools/docs_links.py docs/_build/html
"""

from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

EXTERNAL = ("http", "https", "mailto", "ftp", "data", "javascript")


class Page(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)
            elif name in ("href", "src") and value and tag != "link" or \
                    (tag == "link" and name == "href" and value):
                self.links.append(value)


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8", errors="replace"))
    return page


def broken_links(root: Path) -> list[str]:
    pages = {p: parse(p) for p in sorted(root.rglob("*.html"))}
    bad = []
    for path, page in pages.items():
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme in EXTERNAL or parts.netloc:
                continue
            target = path if not parts.path else \
                (path.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                bad.append("%s: %s (no such file)" % (
                    path.relative_to(root), link))
                continue
            frag = unquote(parts.fragment)
            if frag and target.suffix == ".html":
                ids = pages[target].ids if target in pages else \
                    parse(target).ids
                if frag not in ids:
                    bad.append("%s: %s (no anchor %r)" % (
                        path.relative_to(root), link, frag))
    return bad


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else "docs/_build/html").resolve()
    if not (root / "index.html").exists():
        print("no built site in %s" % root, file=sys.stderr)
        return 2
    bad = broken_links(root)
    for line in bad:
        print("broken link: %s" % line, file=sys.stderr)
    print("checked the internal links of %d pages: %d broken"
          % (len(list(root.rglob("*.html"))), len(bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
