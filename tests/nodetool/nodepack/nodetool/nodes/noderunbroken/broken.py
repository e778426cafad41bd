"""Fails on import, as a node module whose dependency is missing does."""

import noderun_no_such_dependency  # noqa: F401
