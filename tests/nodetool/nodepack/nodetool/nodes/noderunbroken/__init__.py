"""A node package with a module that cannot be imported: a worker reports it in ``load_errors``."""
