"""noderun: a fast, NodeTool-compatible node-execution server.

The public API::

    from noderun import node, NodeContext, Registry, Settings, serve

    @node("mylib.text.Shout", inline=True)
    def shout(text: str = "") -> str:
        return text.upper() + "!"

    serve(Settings(port=7777), Registry([shout]))
"""

from noderun.runtime.context import NodeContext
from noderun.runtime.node import NodeSpec, node
from noderun.runtime.registry import Registry
from noderun.server.app import create_app
from noderun.server.serve import serve
from noderun.server.settings import Settings
from noderun.server.version import VERSION as __version__

__all__ = [
    "NodeContext",
    "NodeSpec",
    "Registry",
    "Settings",
    "__version__",
    "create_app",
    "node",
    "serve",
]
