"""A NodeTool node package of noderun's tests, discovered the way NodeTool discovers
every pack: a subpackage of the ``nodetool.nodes`` namespace package on the path."""
