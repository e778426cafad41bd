"""Choosing a store from its URL, and options from the environment."""

from __future__ import annotations

import pytest

from noderun.persistence import Store, StoreConfigError, StoreOptions, open_store
from noderun.persistence.postgres import PostgresBackend
from noderun.persistence.sqlite import SqliteBackend


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///runs.db", "runs.db"),
        ("sqlite:///data/runs.db", "data/runs.db"),
        ("sqlite:////var/lib/noderun/runs.db", "/var/lib/noderun/runs.db"),
        ("sqlite:///:memory:", ":memory:"),
    ],
)
def test_sqlite_urls_name_relative_and_absolute_paths(url: str, path: str) -> None:
    store = open_store(url, server_id="s1")
    assert isinstance(store, Store) and isinstance(store.backend, SqliteBackend)
    assert (store.backend.path, store.server_id) == (path, "s1")


@pytest.mark.parametrize("url", ["postgresql://u@h/db", "postgres://u@h:5433/db"])
def test_postgres_urls_open_the_postgres_store(url: str) -> None:
    store = open_store(url)
    assert isinstance(store.backend, PostgresBackend)
    assert store.backend.dsn == url
    assert len(store.server_id) == 32  # a uuid4 hex when none is given


@pytest.mark.parametrize("url", ["mysql://h/db", "sqlite://relative.db", "sqlite:///", ""])
def test_unknown_urls_are_config_errors(url: str) -> None:
    with pytest.raises(StoreConfigError) as caught:
        open_store(url)
    assert caught.value.setting == "url"
    assert caught.value.value == url


def test_options_come_from_the_environment() -> None:
    options = StoreOptions.from_env(
        {
            "NODERUN_PG_POOL_MIN": "2",
            "NODERUN_PG_POOL_MAX": "20",
            "NODERUN_PG_COMMAND_TIMEOUT": "7.5",
            "NODERUN_PG_IDLE_LIFETIME": "60",
            "NODERUN_STORE_LEASE_TIMEOUT": "",
        },
        finish_timeout=3,
    )
    assert (options.pg_pool_min, options.pg_pool_max) == (2, 20)
    assert (options.pg_command_timeout, options.pg_idle_lifetime) == (7.5, 60.0)
    assert options.lease_timeout == StoreOptions().lease_timeout
    assert options.finish_timeout == 3


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"NODERUN_PG_POOL_MAX": "many"}, "NODERUN_PG_POOL_MAX"),
        ({"NODERUN_PG_POOL_MIN": "5", "NODERUN_PG_POOL_MAX": "2"}, "pg_pool_min"),
        ({"NODERUN_STORE_HEARTBEAT": "30", "NODERUN_STORE_LEASE_TIMEOUT": "10"}, "lease_timeout"),
        ({"NODERUN_PG_COMMAND_TIMEOUT": "-1"}, "pg_command_timeout"),
    ],
)
def test_bad_options_name_the_setting(env: dict[str, str], setting: str) -> None:
    with pytest.raises(StoreConfigError) as caught:
        StoreOptions.from_env(env)
    assert caught.value.setting == setting
