"""Text nodes under NodeTool's names."""

from __future__ import annotations

from noderun.runtime.node import node


@node("nodetool.text.Concat", title="Concat", inline=True)
def concat(a: str = "", b: str = "") -> str:
    """Concatenate two strings."""
    return a + b


@node("nodetool.text.Join", title="Join", inline=True)
def join(strings: list[str] = [], separator: str = "") -> str:  # noqa: B006 - never mutated
    """Join a list of strings with a separator."""
    return separator.join(strings)


@node("nodetool.text.ToUppercase", title="To Uppercase", inline=True)
def to_uppercase(text: str = "") -> str:
    """Convert text to uppercase."""
    return text.upper()


@node("nodetool.text.Length", title="Length", inline=True)
def length(text: str = "") -> int:
    """The number of characters in the text."""
    return len(text)


NODES = [concat, join, to_uppercase, length]
