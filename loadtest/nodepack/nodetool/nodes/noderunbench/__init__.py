"""The benchmark's NodeTool node package: the trivial node, run in a NodeTool worker."""
