"""A ClientError survives pickle and copy (a process pool hands exceptions back pickled; logging and
retry libraries copy them): the same class, status, code, message and retry verdict, and a
ConnectionFailed is still the httpx error it replaces. Before: the dynamic ConnectionFailed classes
could not be pickled at all and every ClientError came back as a TypeError (cls(*args) with one string).
"""

from __future__ import annotations

import copy
import pickle

import httpx
import pytest

from cleanroom.client import ClientError, ConnectionFailed, UnexpectedResponse
from cleanroom.client_network import _connection_failed


def errors() -> list[ClientError]:
    request = httpx.Request("POST", "http://127.0.0.1:9/v1/models/echo/infer")
    return [
        ClientError(403, "forbidden", "no"),
        UnexpectedResponse(200, "3 bytes past the end", "response_framing"),
        _connection_failed(httpx.ConnectError("refused", request=request), 0, "http://127.0.0.1:9"),
        _connection_failed(httpx.ReadTimeout("slow", request=request), 200, "http://127.0.0.1:9"),
    ]


@pytest.mark.parametrize("how", ["pickle", "copy", "deepcopy"])
def test_client_errors_survive_pickle_and_copy(how: str) -> None:
    rebuild = {
        "pickle": lambda e: pickle.loads(pickle.dumps(e)),
        "copy": copy.copy,
        "deepcopy": copy.deepcopy,
    }[how]
    for error in errors():
        again = rebuild(error)
        assert type(again) is type(error) and str(again) == str(error)
        assert (again.status, again.code, again.message) == (error.status, error.code, error.message)
        if isinstance(error, ConnectionFailed):
            assert again.may_have_been_processed == error.may_have_been_processed
            assert isinstance(again, httpx.ConnectError | httpx.ReadTimeout)
            assert again.request.url == error.request.url
