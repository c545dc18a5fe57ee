"""The sans-IO agent protocol: frames, handshake, requests, streams, cancel, errors."""

from __future__ import annotations

import json

import pytest

from stackctl.transport.protocol import (
    CLIENT,
    NEED_DATA,
    SERVER,
    Cancel,
    Connection,
    ConnectionClosed,
    ErrorInfo,
    Goodbye,
    Hello,
    IncompatibleVersion,
    LocalProtocolError,
    RemoteProtocolError,
    Request,
    Response,
    StreamEnd,
    StreamEvent,
    encode_frame,
)
from stackctl.errors import StackctlError


def drain(conn: Connection) -> list:
    out = []
    while (event := conn.next_event()) is not NEED_DATA:
        out.append(event)
    return out


def feed(conn: Connection, data: bytes, *, bytewise: bool = False) -> list:
    if not bytewise:
        conn.receive_data(data)
        return drain(conn)
    events = []
    for i in range(len(data)):
        conn.receive_data(data[i:i + 1])
        events += drain(conn)
    return events


def pair() -> tuple[Connection, Connection]:
    """A client and a server past the handshake."""
    client, server = Connection(CLIENT), Connection(SERVER)
    assert feed(server, client.send_hello({"cli": "test"})) == \
        [Hello("1.0", CLIENT, {"cli": "test"})]
    assert feed(client, server.send_hello({"node": "n1"})) == [Hello("1.0", SERVER, {"node": "n1"})]
    assert client.ready and server.ready
    return client, server


def raw(message: dict) -> bytes:
    body = json.dumps(message).encode()
    return len(body).to_bytes(4, "big") + body


# -- framing and round trips -------------------------------------------------------------------


def test_frame_is_length_prefixed_json():
    data = encode_frame({"kind": "cancel", "id": 3})
    assert int.from_bytes(data[:4], "big") == len(data) - 4
    assert json.loads(data[4:]) == {"kind": "cancel", "id": 3}


def test_request_response_round_trip():
    client, server = pair()
    rid = client.next_request_id()
    assert feed(server, client.send_request(rid, "ps", {"all": True})) == \
        [Request(rid, "ps", {"all": True})]
    assert server.open_requests == {rid}
    assert feed(client, server.send_response(rid, [{"id": "abc"}])) == \
        [Response(rid, [{"id": "abc"}])]
    assert client.open_requests == frozenset() and server.open_requests == frozenset()


def test_error_response_round_trip():
    client, server = pair()
    client_bytes = client.send_request(1, "inspect", {"name": "nope"})
    feed(server, client_bytes)
    err = ErrorInfo("not_found", "no container named nope", {"name": "nope"})
    (resp,) = feed(client, server.send_response(1, error=err))
    assert resp == Response(1, None, err) and not resp.ok


def test_null_result_is_a_result():
    client, server = pair()
    feed(server, client.send_request(1, "stop"))
    assert feed(client, server.send_response(1, None)) == [Response(1, None)]


def test_byte_by_byte_feeding_gives_the_same_events():
    client, server = pair()
    data = client.send_request(1, "logs", {"follow": True}) + client.send_request(2, "ps")
    events = feed(server, data, bytewise=True)
    assert events == [Request(1, "logs", {"follow": True}), Request(2, "ps", {})]


def test_several_frames_in_one_read():
    client, server = pair()
    feed(server, client.send_request(1, "logs"))
    data = b"".join(server.send_event(1, {"line": f"l{i}"}) for i in range(5))
    data += server.send_end(1)
    events = feed(client, data)
    assert [e.event["line"] for e in events[:5]] == ["l0", "l1", "l2", "l3", "l4"]
    assert events[5] == StreamEnd(1)


def test_unicode_payload_round_trips():
    client, server = pair()
    feed(server, client.send_request(1, "exec", {"cmd": ["echo", "héllo ✓"]}))
    assert server.open_requests == {1}


# -- streams -----------------------------------------------------------------------------------


def test_interleaved_streams_keep_their_ids():
    client, server = pair()
    feed(server, client.send_request(1, "logs", {"follow": True}))
    feed(server, client.send_request(2, "events"))
    data = (server.send_event(1, "a1") + server.send_event(2, "b1") + server.send_event(1, "a2")
            + server.send_end(2) + server.send_event(1, "a3"))
    events = feed(client, data, bytewise=True)
    assert events == [StreamEvent(1, "a1"), StreamEvent(2, "b1"), StreamEvent(1, "a2"),
                      StreamEnd(2), StreamEvent(1, "a3")]
    assert client.open_requests == {1}


def test_client_sends_input_on_an_attach_stream():
    client, server = pair()
    feed(server, client.send_request(7, "attach", {"container": "web.1"}))
    assert feed(server, client.send_event(7, {"stdin": "bHMK"})) == \
        [StreamEvent(7, {"stdin": "bHMK"})]


def test_stream_end_with_error():
    client, server = pair()
    feed(server, client.send_request(1, "logs"))
    err = ErrorInfo("not_found", "container went away")
    assert feed(client, server.send_end(1, error=err)) == [StreamEnd(1, err)]


def test_cancel_then_events_until_end():
    client, server = pair()
    feed(server, client.send_request(1, "logs", {"follow": True}))
    in_flight = server.send_event(1, "line before cancel")
    assert feed(server, client.send_cancel(1)) == [Cancel(1)]
    assert server.is_cancelled(1) and client.is_cancelled(1)
    # the event crossing the cancel on the wire is still accepted
    end = server.send_end(1, error=ErrorInfo("cancelled", "cancelled by the client"))
    events = feed(client, in_flight + end)
    assert events[0] == StreamEvent(1, "line before cancel")
    assert isinstance(events[1], StreamEnd) and events[1].error.code == "cancelled"
    assert not client.is_cancelled(1) and client.open_requests == frozenset()


def test_cancel_twice_is_our_bug():
    client, server = pair()
    client.send_request(1, "logs")
    client.send_cancel(1)
    with pytest.raises(LocalProtocolError, match="cancelled already"):
        client.send_cancel(1)


# -- handshake ---------------------------------------------------------------------------------


def test_incompatible_major_version_is_refused_with_a_reason():
    client = Connection(CLIENT, version="2.0")
    server = Connection(SERVER)
    server.receive_data(client.send_hello())
    with pytest.raises(IncompatibleVersion) as info:
        server.next_event()
    assert "the client speaks agent protocol 2.0, this stackctl speaks 1.0" in str(info.value)
    assert isinstance(info.value, RemoteProtocolError)
    assert isinstance(info.value, StackctlError)
    (bye,) = feed(client, server.send_goodbye(info.value))
    assert isinstance(bye, Goodbye) and bye.error.code == "version_mismatch"
    assert "1.0" in bye.error.message
    assert client.closed


def test_minor_version_difference_is_accepted():
    client = Connection(CLIENT, version="1.7")
    server = Connection(SERVER)
    assert feed(server, client.send_hello()) == [Hello("1.7", CLIENT, {})]


def test_invalid_version_string():
    server = Connection(SERVER)
    with pytest.raises(RemoteProtocolError, match="invalid protocol version"):
        feed(server, raw({"kind": "hello", "version": "one", "role": "client"}))


def test_requests_before_hello_are_refused_both_ways():
    client = Connection(CLIENT)
    with pytest.raises(LocalProtocolError, match="before hello"):
        client.send_request(1, "ps")
    server = Connection(SERVER)
    with pytest.raises(RemoteProtocolError, match="before hello"):
        feed(server, raw({"kind": "request", "id": 1, "method": "ps"}))


def test_server_speaks_only_after_the_client():
    server = Connection(SERVER)
    with pytest.raises(LocalProtocolError, match="after the client's hello"):
        server.send_hello()
    client = Connection(CLIENT)
    with pytest.raises(RemoteProtocolError, match="before the client"):
        feed(client, raw({"kind": "hello", "version": "1.0", "role": "server"}))


def test_client_may_pipeline_requests_after_its_hello():
    client, server = Connection(CLIENT), Connection(SERVER)
    data = client.send_hello() + client.send_request(1, "ps")
    events = feed(server, data)
    assert isinstance(events[0], Hello) and events[1] == Request(1, "ps", {})


def test_wrong_role_in_hello():
    server = Connection(SERVER)
    with pytest.raises(RemoteProtocolError, match="expected a client"):
        feed(server, raw({"kind": "hello", "version": "1.0", "role": "server"}))


# -- remote garbage ----------------------------------------------------------------------------


@pytest.mark.parametrize("body, match", [
    (b"{not json", "not UTF-8 JSON"),
    (b"\xff\xfe", "not UTF-8 JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"kind": "teleport", "id": 1}', "unknown message kind 'teleport'"),
    (b'{"kind": "event", "id": 99, "event": 1}', "request 99, which is not open"),
    (b'{"kind": "response", "id": 0, "result": 1}', "invalid id 0"),
    (b'{"kind": "request", "id": 5, "method": "ps"}', "server may not send a request"),
    (b'{"kind": "response", "id": 1}', "neither result nor error"),
    (b'{"kind": "end", "id": 1, "error": "bad"}', "error must be an object"),
])
def test_garbage_from_the_peer_is_a_remote_error(body, match):
    client, server = pair()
    client.send_request(1, "ps")
    client.receive_data(len(body).to_bytes(4, "big") + body)
    with pytest.raises(RemoteProtocolError, match=match):
        client.next_event()
    # the connection stays broken
    with pytest.raises(RemoteProtocolError):
        client.next_event()
    with pytest.raises(LocalProtocolError, match="broken"):
        client.send_request(2, "ps")


def test_oversized_frame_is_refused_from_its_header_alone():
    client, server = pair()
    small = Connection(CLIENT, max_frame=1024)
    small.send_hello()
    small.receive_data(raw({"kind": "hello", "version": "1.0", "role": "server"}))
    small.next_event()
    small.receive_data((10 * 1024 * 1024).to_bytes(4, "big") + b"{")
    with pytest.raises(RemoteProtocolError, match="frame of 10485760 bytes; the limit is 1024"):
        small.next_event()


def test_we_refuse_to_send_an_oversized_frame():
    client = Connection(CLIENT, max_frame=64)
    client.send_hello()
    with pytest.raises(LocalProtocolError, match="larger than the frame limit"):
        client.send_request(1, "run", {"blob": "x" * 100})
    assert client.open_requests == frozenset()  # nothing half-sent


def test_duplicate_request_id_from_the_peer():
    client, server = pair()
    feed(server, client.send_request(1, "ps"))
    with pytest.raises(RemoteProtocolError, match="already in use"):
        feed(server, raw({"kind": "request", "id": 1, "method": "ps"}))


# -- local misuse ------------------------------------------------------------------------------


def test_local_misuse():
    client, server = pair()
    with pytest.raises(LocalProtocolError, match="client cannot send a response"):
        client.send_response(1, "x")
    with pytest.raises(LocalProtocolError, match="server cannot send a request"):
        server.send_request(1, "ps")
    with pytest.raises(LocalProtocolError, match="request 4 is not open"):
        server.send_response(4, "x")
    client.send_request(1, "ps")
    with pytest.raises(LocalProtocolError, match="still open"):
        client.send_request(1, "ps")
    with pytest.raises(LocalProtocolError, match="positive integer"):
        client.send_request(0, "ps")
    with pytest.raises(LocalProtocolError, match="cannot encode"):
        client.send_request(2, "ps", {"x": object()})
    with pytest.raises(LocalProtocolError, match="hello was sent already"):
        client.send_hello()


def test_next_request_id_skips_open_ids():
    client, _ = pair()
    client.send_request(1, "ps")
    client.send_request(2, "ps")
    assert client.next_request_id() == 3


# -- closing -----------------------------------------------------------------------------------


def test_eof_at_a_frame_boundary_is_a_clean_close():
    client, server = pair()
    server.receive_data(b"")
    assert server.next_event() == ConnectionClosed()
    assert server.closed
    with pytest.raises(LocalProtocolError, match="closed"):
        server.send_hello()


def test_eof_in_the_middle_of_a_frame_is_a_remote_error():
    client, server = pair()
    data = client.send_request(1, "ps")
    server.receive_data(data[:-3])
    assert server.next_event() is NEED_DATA
    server.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="middle of a frame"):
        server.next_event()


def test_goodbye_closes_and_later_frames_are_refused():
    client, server = pair()
    assert feed(client, server.send_goodbye()) == [Goodbye()]
    with pytest.raises(LocalProtocolError, match="closed"):
        client.send_request(1, "ps")
    with pytest.raises(RemoteProtocolError, match="after closing"):
        feed(client, raw({"kind": "event", "id": 1, "event": 1}))


def test_a_cancel_that_crosses_the_end_of_its_request_is_dropped():
    """The client cancels while the server's response is on the wire: the server drops the
    late cancel (and late input) instead of breaking the connection; a cancel for an id that
    was never opened is still a protocol error."""
    from stackctl.transport import protocol as P

    client, server = P.Connection(P.CLIENT), P.Connection(P.SERVER)
    server.receive_data(client.send_hello({}))
    assert isinstance(server.next_event(), P.Hello)
    client.receive_data(server.send_hello({}))
    assert isinstance(client.next_event(), P.Hello)
    rid = client.next_request_id()
    server.receive_data(client.send_request(rid, "m", {}))
    assert isinstance(server.next_event(), P.Request)
    late = client.send_cancel(rid)  # sent before the response arrives
    answer = server.send_response(rid, {"ok": True})
    server.receive_data(late)
    assert server.next_event() is P.NEED_DATA  # dropped, connection fine
    client.receive_data(answer)
    assert isinstance(client.next_event(), P.Response)
    server.receive_data(P.encode_frame({"kind": "cancel", "id": 999}))
    with pytest.raises(P.RemoteProtocolError):
        server.next_event()
