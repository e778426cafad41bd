"""lib.markdown: each extractor against NodeTool's semantics, and a real server."""

from __future__ import annotations

from noderun.runtime.nodes import markdown
from noderun.runtime.nodes.values import ColumnDef, DataframeRef
from tests.runtime.nodes.support import failure, outputs, run_graph
from tests.server.helpers import ServerHandle
from tests.support.graphs import nd

DOC = """# Title
Intro with [a link](https://a.example) and <https://b.example>.

## Section
- one
* two
+ three

Between.

1. first
2. second
10. tenth

```python
print("hi")
```

```
plain
```

| name | age |
|------|-----|
| Ann  | 30  |
| Bob  | 40  |

### Deep
"""


def test_extract_links() -> None:
    assert markdown.extract_links(markdown=DOC) == [
        {"url": "https://a.example", "title": "a link"},
        {"url": "https://b.example", "title": ""},
    ]
    without = markdown.extract_links(markdown=DOC, include_titles=False)
    assert [link["title"] for link in without] == ["", ""]
    assert markdown.extract_links() == []


def test_extract_headers() -> None:
    assert markdown.extract_headers(markdown=DOC) == [
        {"level": 1, "text": "Title", "index": 0},
        {"level": 2, "text": "Section", "index": 1},
        {"level": 3, "text": "Deep", "index": 2},
    ]
    assert [h["text"] for h in markdown.extract_headers(markdown=DOC, max_level=2)] == [
        "Title",
        "Section",
    ]
    assert markdown.extract_headers(markdown="#NoSpace\n####### seven") == []


def test_extract_bullet_lists_groups_runs() -> None:
    assert markdown.extract_bullet_lists(markdown=DOC) == [
        [{"text": "one"}, {"text": "two"}, {"text": "three"}]
    ]
    assert markdown.extract_bullet_lists(markdown="- a\n\n- b") == [
        [{"text": "a"}],
        [{"text": "b"}],
    ]
    assert markdown.extract_bullet_lists() == []


def test_extract_numbered_lists() -> None:
    assert markdown.extract_numbered_lists(markdown=DOC) == [["first", "second", "tenth"]]
    assert markdown.extract_numbered_lists(markdown="1) no") == []


def test_extract_code_blocks() -> None:
    assert markdown.extract_code_blocks(markdown=DOC) == [
        {"language": "python", "code": 'print("hi")'},
        {"language": "text", "code": "plain"},
    ]
    assert markdown.extract_code_blocks(markdown="```\nunclosed") == []


def test_extract_tables_first_table_as_dataframe() -> None:
    table = markdown.extract_tables(markdown=DOC)
    assert table == DataframeRef(
        columns=[
            ColumnDef(name="name", data_type="string"),
            ColumnDef(name="age", data_type="string"),
        ],
        data=[["Ann", "30"], ["Bob", "40"]],
    )
    assert markdown.extract_tables(markdown="| a |\n|---|") == DataframeRef(columns=[], data=[])
    assert markdown.extract_tables() == DataframeRef(columns=[], data=[])


async def test_markdown_over_websocket(server: ServerHandle) -> None:
    """The dataframe arrives as NodeTool's map."""
    terminal = await run_graph(
        server,
        nd("tables", "lib.markdown.ExtractTables", markdown=DOC),
        nd("headers", "lib.markdown.ExtractHeaders", markdown=DOC, max_level=1),
    )
    found = outputs(terminal)
    assert found["headers"] == {"output": [{"level": 1, "text": "Title", "index": 0}]}
    assert found["tables"]["output"] == {
        "type": "dataframe",
        "uri": "",
        "asset_id": None,
        "data": [["Ann", "30"], ["Bob", "40"]],
        "metadata": None,
        "columns": [
            {"name": "name", "data_type": "string", "description": ""},
            {"name": "age", "data_type": "string", "description": ""},
        ],
    }


async def test_out_of_range_level_fails_the_run_naming_the_node(server: ServerHandle) -> None:
    terminal = await run_graph(server, nd("h", "lib.markdown.ExtractHeaders", max_level=7))
    failure(terminal, "h", "lib.markdown.ExtractHeaders")
