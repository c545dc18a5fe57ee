"""The agent protocol's receiving side (stackctl/transport/protocol.py) against a hostile
peer: garbage bytes, frames of every wrong shape, oversized frames, a peer that stops in the
middle of a header or a frame. Only a ProtocolError (a StackctlError, one line) comes out, the
buffer never grows past one frame, and a broken connection stays broken."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from fuzz_settings import FUZZ, bounded
from stackctl.transport import protocol as P

KINDS = ["hello", "request", "response", "event", "end", "cancel", "goodbye", "x", None, 1]
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
              st.text(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=10)
messages = st.fixed_dictionaries(
    {"kind": st.sampled_from(KINDS)},
    optional={"id": st.one_of(st.integers(-3, 5), json_values), "version": st.sampled_from(
        ["1.0", "1.7", "2.0", "", "x", None, 1]), "role": st.sampled_from(["client", "server", "x"]),
        "method": st.one_of(st.text(max_size=10), json_values), "params": json_values,
        "result": json_values, "error": json_values, "event": json_values, "node": json_values})


def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


def _drain(conn: P.Connection, chunks: list[bytes], max_frame: int) -> None:
    """Feed the chunks and pull every event, as the agent's and the controller's loops do."""
    with bounded():
        for chunk in chunks + [b""]:
            conn.receive_data(chunk)
            while True:
                ev = conn.next_event()
                if ev is P.NEED_DATA or isinstance(ev, P.ConnectionClosed):
                    break
            assert len(conn._buffer) <= max_frame + P.HEADER_SIZE + max(map(len, chunks), default=0)


def _hello(role: str) -> bytes:
    return _frame(json.dumps({"kind": "hello", "version": P.PROTOCOL_VERSION, "role": role,
                              "node": {}}).encode())


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for p in points + [len(data)]:
        out.append(data[prev:p])
        prev = p
    return [c for c in out if c]


@FUZZ
@given(role=st.sampled_from([P.CLIENT, P.SERVER]), data=st.binary(max_size=300),
       cuts=st.lists(st.integers(0, 400), max_size=5))
def test_garbage_bytes(role, data, cuts):
    _drain(P.Connection(role, max_frame=1024), _split(data, cuts), 1024)


@FUZZ
@given(role=st.sampled_from([P.CLIENT, P.SERVER]), hello=st.booleans(),
       msgs=st.lists(messages, max_size=6), cuts=st.lists(st.integers(0, 2000), max_size=6),
       stop=st.integers(0, 2000))
def test_messages_of_every_shape_cut_anywhere(role, hello, msgs, cuts, stop):
    conn = P.Connection(role, max_frame=4096)
    peer = P.CLIENT if role == P.SERVER else P.SERVER
    data = (_hello(peer) if hello else b"") + b"".join(
        _frame(json.dumps(m).encode()) for m in msgs)
    _drain(conn, _split(data, cuts), 4096)
    _drain(P.Connection(role, max_frame=4096), _split(data[:stop], cuts), 4096)  # stops mid-way


@FUZZ
@given(role=st.sampled_from([P.CLIENT, P.SERVER]), body=st.one_of(
    st.binary(max_size=100), st.just(b"[" * 100_000), st.just(b'{"kind": ' + b"[" * 50_000),
    st.just(b"\xff\xfe"), st.just(b'"just a string"'), st.just(b"1e999999")))
def test_bodies_that_are_not_json_objects(role, body):
    conn = P.Connection(role, max_frame=1 << 20)
    peer = P.CLIENT if role == P.SERVER else P.SERVER
    _drain(conn, [_hello(peer), _frame(body)], 1 << 20)


@FUZZ
@given(size=st.integers(4097, 2**32 - 1))
def test_oversized_frame_is_refused_before_it_is_buffered(size):
    conn = P.Connection(P.SERVER, max_frame=4096)
    _drain(conn, [size.to_bytes(4, "big") + b"x" * 100], 4096)
    assert conn._broken is not None  # refused at the header, not after reading `size` bytes
