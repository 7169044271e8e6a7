"""A watch closed by the drain while its thread reads: the read ends quietly, whatever urllib3 and
http.client raise from the connection taken away under them (seen in `make bench`: an
AttributeError from http.client's ``fp.read`` after close), and never hides a failure of a watch
that nobody closed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from serverless_nth.kube.client import KubeTemporaryError, WatchStream


class ClosedUnderTheRead:
    """A urllib3 response whose second chunk is read after ``close`` took its file away."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.closed = False
        self.released = False

    def stream(self, amt: int, decode_content: bool) -> Iterator[bytes]:
        yield b'{"type": "MODIFIED", "object": {}}\n'
        if self.closed:
            raise self.error
        yield b'{"type": "MODIFIED", "object": {}}\n'

    def shutdown(self) -> None:
        self.closed = True

    def close(self) -> None:
        self.closed = True

    def release_conn(self) -> None:
        self.released = True


@pytest.mark.parametrize(
    "error",
    [
        AttributeError("'NoneType' object has no attribute 'read'"),
        ValueError("I/O operation on closed file"),
        OSError(9, "Bad file descriptor"),
    ],
)
def test_a_watch_closed_while_reading_ends_quietly(error: Exception) -> None:
    raw = ClosedUnderTheRead(error)
    stream = WatchStream(raw, "drain")
    events = iter(stream)
    assert next(events)["type"] == "MODIFIED"
    stream.close()
    assert list(events) == []
    assert raw.released


def test_a_watch_nobody_closed_still_fails_as_temporary() -> None:
    class Broken(ClosedUnderTheRead):
        def stream(self, amt: int, decode_content: bool) -> Iterator[bytes]:
            yield b'{"type": "ADDED", "object": {}}\n'
            raise OSError(104, "Connection reset by peer")

    events = iter(WatchStream(Broken(OSError()), "drain"))
    next(events)
    with pytest.raises(KubeTemporaryError, match="watch ended"):
        next(events)
