"""Markdown extraction nodes under NodeTool's names (``lib.markdown.*``).

Line-oriented regular expressions, as NodeTool's: no Markdown parser, so a
``#`` line inside a code block counts as a header. These run on the runner
pool, since a document may be large. ``ExtractTables`` gives NodeTool's
dataframe map, ``{"type": "dataframe", "columns": [{"name", "data_type":
"string", "description"}], "data": [[…], …], …}`` (see
:mod:`noderun.runtime.nodes.values`); ``ExtractBulletLists`` and
``ExtractNumberedLists`` give one list per run of consecutive items, as
NodeTool's do (their declared output types there say otherwise).
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

from noderun.runtime.node import node
from noderun.runtime.nodes.values import ColumnDef, DataframeRef

Markdown = Annotated[str, msgspec.Meta(description="The markdown text to analyze")]

_LINK = re.compile(r"\[([^\]]+)\]\(([^)]+)\)|<([^>]+)>")
_HEADER = re.compile(r"^(#{1,6})\s+(.+)$")
_BULLET = re.compile(r"^\s*[-*+]\s+(.+)$")
_NUMBERED = re.compile(r"^\s*\d+\.\s+(.+)$")
_CODE_BLOCK = re.compile(r"```(\w*)\n(.*?)\n```", re.DOTALL)


def _runs(markdown: str, item: re.Pattern[str]) -> list[list[str]]:
    """The stripped first group of each matching line, grouped by runs of matching lines."""
    runs: list[list[str]] = []
    current: list[str] = []
    for line in markdown.split("\n"):
        found = item.match(line)
        if found:
            current.append(found.group(1).strip())
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs


@node("lib.markdown.ExtractLinks", title="Extract Links")
def extract_links(
    markdown: Markdown = "",
    include_titles: Annotated[
        bool, msgspec.Meta(description="Whether to include link titles in output")
    ] = True,
) -> list[dict[str, str]]:
    """Every ``[title](url)`` and ``<url>`` link, as ``{"url", "title"}`` in order."""
    links = []
    for found in _LINK.finditer(markdown):
        if found.group(1) and found.group(2):
            title = found.group(1) if include_titles else ""
            links.append({"url": found.group(2), "title": title})
        else:
            links.append({"url": found.group(3), "title": ""})
    return links


@node("lib.markdown.ExtractHeaders", title="Extract Headers")
def extract_headers(
    markdown: Markdown = "",
    max_level: Annotated[
        int, msgspec.Meta(ge=1, le=6, description="Maximum header level to extract (1-6)")
    ] = 6,
) -> list[dict[str, object]]:
    """ATX headers up to ``max_level`` as ``{"level", "text", "index"}`` (an outline)."""
    headers: list[dict[str, object]] = []
    for line in markdown.split("\n"):
        found = _HEADER.match(line)
        if found and len(found.group(1)) <= max_level:
            headers.append(
                {
                    "level": len(found.group(1)),
                    "text": found.group(2).strip(),
                    "index": len(headers),
                }
            )
    return headers


@node("lib.markdown.ExtractBulletLists", title="Extract Bullet Lists")
def extract_bullet_lists(markdown: Markdown = "") -> list[list[dict[str, str]]]:
    """Bulleted lists (``-``, ``*``, ``+``): each a list of ``{"text"}`` items."""
    return [[{"text": text} for text in run] for run in _runs(markdown, _BULLET)]


@node("lib.markdown.ExtractNumberedLists", title="Extract Numbered Lists")
def extract_numbered_lists(markdown: Markdown = "") -> list[list[str]]:
    """Numbered lists (``1.``): each a list of the items' texts."""
    return _runs(markdown, _NUMBERED)


@node("lib.markdown.ExtractCodeBlocks", title="Extract Code Blocks")
def extract_code_blocks(markdown: Markdown = "") -> list[dict[str, str]]:
    """Fenced code blocks as ``{"language", "code"}`` (language ``"text"`` when none)."""
    return [
        {"language": found.group(1) or "text", "code": found.group(2).strip()}
        for found in _CODE_BLOCK.finditer(markdown)
    ]


@node("lib.markdown.ExtractTables", title="Extract Tables")
def extract_tables(markdown: Markdown = "") -> DataframeRef:
    """The first pipe table: its first row the (string) columns, its third row on the
    data (the second is the separator); an empty dataframe when there is none."""
    rows: list[list[str]] = []
    for line in markdown.split("\n"):
        if "|" in line:
            cells = [cell.strip() for cell in line.split("|")[1:-1]]
            if cells:
                rows.append(cells)
        elif rows:
            break
    if len(rows) <= 2:
        return DataframeRef(columns=[], data=[])
    columns = [ColumnDef(name=name, data_type="string") for name in rows[0]]
    return DataframeRef(columns=columns, data=[list(row) for row in rows[2:]])


NODES = [
    extract_links,
    extract_headers,
    extract_bullet_lists,
    extract_numbered_lists,
    extract_code_blocks,
    extract_tables,
]
