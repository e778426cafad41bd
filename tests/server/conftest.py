"""Fixtures of the end-to-end tests: a real uvicorn server on a free port, in a thread.

``async def`` tests run through the hook in ``tests/conftest.py`` (a fresh event loop
each). Each module shares one server (``server``); tests that need other settings
start their own with :func:`tests.server.helpers.running_server`.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.server.helpers import ServerHandle, running_server
from tests.server.process import Process
from tests.support.openapi import check_answer


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    """An ephemeral-only server (``store="none"``), shared by the tests of one module."""
    with running_server() as handle:
        yield handle


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    """Append every started server :class:`Process`; any still running at the end is killed."""
    started: list[Process] = []
    yield started
    for process in started:
        process.kill()


@pytest.fixture(autouse=True)
def documented_http_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every HTTP answer a test here gets from a test server fits the OpenAPI document
    (``noderun schema --openapi``): its route and status are documented, its body fits."""
    handle = httpx.HTTPTransport.handle_request
    handle_async = httpx.AsyncHTTPTransport.handle_async_request

    def checked(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        response = handle(self, request)
        if request.url.host == "127.0.0.1":
            response.read()
            _check(request, response)
        return response

    async def checked_async(
        self: httpx.AsyncHTTPTransport, request: httpx.Request
    ) -> httpx.Response:
        response = await handle_async(self, request)
        if request.url.host == "127.0.0.1":
            await response.aread()
            _check(request, response)
        return response

    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", checked)
    monkeypatch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", checked_async)


def _check(request: httpx.Request, response: httpx.Response) -> None:
    check_answer(
        request.method,
        request.url.path,
        response.status_code,
        response.headers.get("content-type", ""),
        response.content,
    )
