"""A fetched document's text: HTML (stdlib parser), text/*, JSON/XML, PDF (pypdf).

Pure: bytes and a content type in, a `Document` (title, text, links) out, or
`Unsupported` for anything else (images, archives, binaries).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin

_TEXT_TYPES = ("application/json", "application/xml", "application/javascript",
               "application/x-javascript", "application/ld+json", "application/rss+xml",
               "application/atom+xml", "application/x-yaml", "application/yaml")
_SKIP = frozenset({"script", "style", "noscript", "template", "svg", "head", "iframe",
                   "object", "canvas"})
_BLOCK = frozenset({"p", "div", "br", "li", "ul", "ol", "tr", "table", "section", "article",
                    "header", "footer", "nav", "aside", "main", "h1", "h2", "h3", "h4", "h5",
                    "h6", "pre", "blockquote", "dt", "dd", "hr", "form", "figure",
                    "figcaption", "details", "summary"})
_MAX_LINKS = 500
_SPACES = re.compile(r"[ \t\r\f\v]+")
_BLANKS = re.compile(r"\n\s*\n+")


class Unsupported(Exception):
    """The content type has no text the model could read."""


@dataclass(slots=True)
class Document:
    text: str
    title: str | None = None
    links: list[str] = field(default_factory=list)


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def charset(content_type: str | None) -> str:
    for part in (content_type or "").split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            return value.strip().strip("\"'")
    return "utf-8"


def extract(body: bytes, content_type: str | None, base_url: str) -> Document:
    kind = media_type(content_type)
    if kind in ("text/html", "application/xhtml+xml"):
        return html_document(_decode(body, content_type), base_url)
    if kind == "application/pdf":
        return pdf_document(body)
    if kind.startswith("text/") or kind in _TEXT_TYPES or kind.endswith(("+json", "+xml")):
        return Document(_decode(body, content_type))
    if not kind and body.lstrip()[:5].lower() in (b"<!doc", b"<html"):
        return html_document(_decode(body, content_type), base_url)
    raise Unsupported(kind or "unknown")


def _decode(body: bytes, content_type: str | None) -> str:
    try:
        return body.decode(charset(content_type), errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


class _HTMLText(HTMLParser):
    def __init__(self, base_url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base_url = base_url
        self.parts: list[str] = []
        self.title: list[str] = []
        self.links: list[str] = []
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in _SKIP:
            self._skip += 1
        elif tag in _BLOCK:
            self.parts.append("\n")
        if tag == "a" and len(self.links) < _MAX_LINKS:
            href = dict(attrs).get("href")
            if href and not href.startswith(("#", "javascript:", "mailto:")):
                self.links.append(urljoin(self.base_url, href))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "hr"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in _SKIP:
            self._skip = max(self._skip - 1, 0)
        elif tag in _BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)
        elif not self._skip:
            self.parts.append(data)


def html_document(html: str, base_url: str) -> Document:
    parser = _HTMLText(base_url)
    parser.feed(html)
    parser.close()
    return Document(_tidy("".join(parser.parts)), _tidy("".join(parser.title)) or None,
                    parser.links)


def _tidy(text: str) -> str:
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()


def pdf_document(body: bytes) -> Document:
    from pypdf import PdfReader  # imported on first use: most fetches are HTML
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(body))
        pages = [page.extract_text() or "" for page in reader.pages]
        meta = reader.metadata
        title = str(meta.title) if meta is not None and meta.title else None
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise Unsupported("application/pdf (unreadable)") from exc
    return Document(_tidy("\n\n".join(pages)), title)
