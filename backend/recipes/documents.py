"""Text out of documents, as blocks that keep where they came from (file, page, heading).

Parsers, chosen for being pure Python, well kept, and reading what they are asked and nothing else:
- PDF: pypdf (text layer per page; no OCR, so a scanned PDF is reported, never silently empty);
- DOCX: python-docx (paragraphs with their styles, so 'Heading N' paragraphs are headings);
- HTML: the standard library's html.parser (h1-h6 are headings; script, style and nav are skipped);
- Markdown: '#' lines are headings, blank lines end paragraphs; TXT: blank lines end paragraphs.
A zip is read member by member in memory (never extracted to disk, so no member name can point outside).
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from backend.errors import TuneForgeError

DOCUMENT_SUFFIXES = (".pdf", ".docx", ".md", ".markdown", ".html", ".htm", ".txt")
SOURCE_SUFFIXES = (*DOCUMENT_SUFFIXES, ".zip")
MAX_MEMBER_BYTES = 50 << 20  # a zip member larger than this is refused: a zip bomb would fill memory
MAX_FILES = 2000


@dataclass
class Block:
    """A heading or a paragraph of one file."""

    file: str
    text: str
    heading: bool = False
    page: int | None = None


@dataclass
class FileReport:
    """What one source gave: its blocks, or why it gave none (`error`), and later how many chunks."""

    path: str
    blocks: list[Block] = field(default_factory=list, repr=False)
    error: str | None = None
    chunks: int = 0

    def as_dict(self) -> dict:
        return {"path": self.path, "chunks": self.chunks, "error": self.error}


def read_sources(paths: list[str | Path]) -> list[FileReport]:
    """Every document the paths name (files, zips, folders searched recursively), each read or refused by name."""
    reports: list[FileReport] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SOURCE_SUFFIXES)
            if not found:
                reports.append(FileReport(str(path), error="the folder holds no PDF, DOCX, Markdown, HTML or TXT"))
            reports += [r for p in found for r in _read_file(p)]
        elif path.is_file():
            reports += _read_file(path)
        else:
            reports.append(FileReport(str(path), error="no such file or folder"))
        if len(reports) > MAX_FILES:
            raise TuneForgeError(f"more than {MAX_FILES} documents: split the sources into smaller recipes")
    return reports


def _read_file(path: Path) -> list[FileReport]:
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return _read_zip(path)
    if suffix not in DOCUMENT_SUFFIXES:
        return [FileReport(str(path), error=f"unsupported file type (use {', '.join(SOURCE_SUFFIXES)})")]
    return [read_document(path.name, suffix, path.read_bytes(), str(path))]


def _read_zip(path: Path) -> list[FileReport]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        return [FileReport(str(path), error=f"not a readable zip ({exc})")]
    reports = []
    with archive:
        for info in archive.infolist():
            name, suffix = info.filename, Path(info.filename).suffix.lower()
            if info.is_dir() or suffix not in DOCUMENT_SUFFIXES or "__MACOSX" in name:
                continue
            where = f"{path}!{name}"
            if info.file_size > MAX_MEMBER_BYTES:
                reports.append(FileReport(where, error=f"larger than {MAX_MEMBER_BYTES >> 20} MB unpacked"))
                continue
            reports.append(read_document(Path(name).name, suffix, archive.read(info), where))
    if not reports:
        reports.append(FileReport(str(path), error="the zip holds no PDF, DOCX, Markdown, HTML or TXT"))
    return reports


def read_document(name: str, suffix: str, data: bytes, where: str) -> FileReport:
    """One document's blocks; a file that cannot be read says why in its report, and the others go on."""
    try:
        blocks = READERS[suffix](name, data)
    except TuneForgeError as exc:
        return FileReport(where, error=str(exc))
    except Exception as exc:  # noqa: BLE001 - a broken file of any kind is that file's problem, not the recipe's
        return FileReport(where, error=f"cannot read it ({type(exc).__name__}: {str(exc)[:200]})")
    if not any(b.text.strip() for b in blocks):
        return FileReport(where, error="no text found in it")
    return FileReport(where, blocks=blocks)


def _pdf(name: str, data: bytes) -> list[Block]:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted and not reader.decrypt(""):
        raise TuneForgeError("the PDF is encrypted with a password")
    blocks = []
    for number, page in enumerate(reader.pages, start=1):
        blocks += [Block(name, p, page=number) for p in _paragraphs(page.extract_text() or "")]
    if not blocks:
        raise TuneForgeError(
            f"no text layer in its {len(reader.pages)} page(s): a scanned PDF? Run OCR on it first (e.g. ocrmypdf)"
        )
    return blocks


def _docx(name: str, data: bytes) -> list[Block]:
    import docx

    document = docx.Document(io.BytesIO(data))
    blocks = []
    for paragraph in document.paragraphs:
        text = paragraph.text.strip()
        style = (paragraph.style.name if paragraph.style is not None else "") or ""
        if text:
            blocks.append(Block(name, text, heading=style.startswith("Heading") or style == "Title"))
    for table in document.tables:  # tables after the text: python-docx keeps them apart from the paragraphs
        for row in table.rows:
            cells = " | ".join(cell.text.strip() for cell in row.cells if cell.text.strip())
            if cells:
                blocks.append(Block(name, cells))
    return blocks


HEADING_LINE = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")


def _markdown(name: str, data: bytes) -> list[Block]:
    blocks, lines = [], []
    for line in _text(data).splitlines() + [""]:
        heading = HEADING_LINE.match(line)
        if heading or not line.strip():
            if lines:
                blocks.append(Block(name, " ".join(lines)))
                lines = []
            if heading and heading.group(1):
                blocks.append(Block(name, heading.group(1), heading=True))
        else:
            lines.append(line.strip())
    return blocks


def _plain(name: str, data: bytes) -> list[Block]:
    return [Block(name, p) for p in _paragraphs(_text(data))]


class _HTMLBlocks(HTMLParser):
    SKIP = {"script", "style", "nav", "head", "noscript", "template"}
    BREAK = {"p", "div", "li", "br", "tr", "section", "article", "blockquote", "pre", "table", "ul", "ol", "dd", "dt"}
    HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}

    def __init__(self, name: str):
        super().__init__(convert_charrefs=True)
        self.name, self.blocks, self.parts, self.skipping = name, [], [], 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in self.BREAK or tag in self.HEADINGS:
            self._flush()

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.HEADINGS:
            self._flush(heading=True)
        elif tag in self.BREAK:
            self._flush()

    def handle_data(self, data):
        if not self.skipping:
            self.parts.append(data)  # inline tags (<b>, <a>) split a sentence: joined again at the flush

    def _flush(self, heading: bool = False):
        text = " ".join("".join(self.parts).split())
        if text:
            self.blocks.append(Block(self.name, text, heading=heading))
        self.parts = []


def _html(name: str, data: bytes) -> list[Block]:
    parser = _HTMLBlocks(name)
    parser.feed(_text(data))
    parser.close()
    parser._flush()
    return parser.blocks


def _text(data: bytes) -> str:
    for encoding in ("utf-8-sig", "utf-16") if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ("utf-8-sig",):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")  # every byte decodes: an odd encoding still gives its ASCII words


def _paragraphs(text: str) -> list[str]:
    """Paragraphs split at blank lines, each joined into one line (PDF lines break inside sentences)."""
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]


READERS = {
    ".pdf": _pdf,
    ".docx": _docx,
    ".md": _markdown,
    ".markdown": _markdown,
    ".html": _html,
    ".htm": _html,
    ".txt": _plain,
}
