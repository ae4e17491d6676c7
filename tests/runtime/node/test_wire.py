"""Wire protocol: round trips, strict decoding, frame limits, and a hypothesis fuzz of the decoder."""

from __future__ import annotations

import struct

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.node.wire import (
    Ack,
    Auth,
    FrameDecoder,
    FrameTooLargeError,
    Hello,
    MalformedFrameError,
    Piece,
    ProtocolError,
    Routes,
    Voucher,
    decode_payload,
    encode,
)

ADDR = "0x" + "ab" * 20


def test_round_trip_of_every_kind_of_message_split_at_every_byte():
    msgs = [
        Hello(
            version=1, node_id="n0", address=ADDR, claimed_bw=0.9, quote_wei=12345, nonce=b"n" * 16, listen_port=9000
        ),
        Auth(b"\x02" * 65),
        Piece(7, "n0", "n3", 1.5, 2.5, 1.0, 0.8, 2, b"x" * 100),
        Ack(7, True, 999, 0.25),
        Voucher(3, 2**64 - 1, b"\x01" * 65),
        Routes({"n1": 1.0, "n2": 3.0}),
    ]
    data = b"".join(encode(m) for m in msgs)
    for cut in range(len(data) + 1):
        dec = FrameDecoder()
        assert dec.feed(data[:cut]) + dec.feed(data[cut:]) == msgs


def test_byte_by_byte_feeding_gives_the_same_messages():
    msgs = [Ack(i, i % 2 == 0, i * 10) for i in range(20)]
    dec = FrameDecoder()
    got = []
    for b in b"".join(encode(m) for m in msgs):
        got.extend(dec.feed(bytes([b])))
    assert got == msgs and dec.buffered == 0


@pytest.mark.parametrize(
    "payload",
    [
        msgspec.msgpack.encode({"t": "nope"}),  # unknown tag
        msgspec.msgpack.encode({"piece_id": 1}),  # no tag
        msgspec.msgpack.encode({"t": "ack", "piece_id": 1, "accepted": True, "extra": 1}),  # unknown field
        msgspec.msgpack.encode({"t": "ack", "accepted": True}),  # missing field
        msgspec.msgpack.encode({"t": "ack", "piece_id": -1, "accepted": True}),  # out of range
        msgspec.msgpack.encode({"t": "ack", "piece_id": "1", "accepted": True}),  # wrong type
        msgspec.msgpack.encode({"t": "voucher", "channel_id": 1, "cumulative_wei": 1, "signature": b"\x00" * 64}),
        msgspec.msgpack.encode({"t": "voucher", "channel_id": -5, "cumulative_wei": 1, "signature": b"\x00" * 65}),
        msgspec.msgpack.encode(
            {"t": "hello", "version": 1, "node_id": "bad id!", "address": ADDR, "claimed_bw": 1.0, "quote_wei": 1}
        ),
        msgspec.msgpack.encode(
            {"t": "hello", "version": 1, "node_id": "n1", "address": "0x12", "claimed_bw": 1.0, "quote_wei": 1}
        ),
        b"\xc1",  # never-used msgpack byte
        b"",
    ],
)
def test_strict_decoding_rejects_with_a_one_line_reason(payload):
    with pytest.raises(MalformedFrameError) as err:
        decode_payload(payload)
    assert "\n" not in str(err.value) and str(err.value).startswith("malformed frame")


def test_oversized_frame_is_refused_from_its_header_alone():
    dec = FrameDecoder(max_frame=1024)
    with pytest.raises(FrameTooLargeError):
        dec.feed(struct.pack(">I", 1025))
    assert FrameDecoder(max_frame=1024).feed(encode(Ack(1, True))) == [Ack(1, True)]


def test_decoder_never_buffers_more_than_one_frame():
    dec = FrameDecoder(max_frame=100)
    dec.feed(struct.pack(">I", 100) + b"\x00" * 99)
    assert dec.buffered == 103


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_decoder_only_returns_messages_or_raises_protocol_errors(data):
    dec = FrameDecoder(max_frame=256)
    try:
        for msg in dec.feed(data):
            assert isinstance(msg, msgspec.Struct)
            assert decode_payload(msgspec.msgpack.encode(msg)) == msg
    except ProtocolError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["t", "piece_id", "accepted", "charge_wei", "wait", "reason", "x"]),
        st.one_of(
            st.integers(-(2**63), 2**64 - 1),
            st.text(max_size=5),
            st.booleans(),
            st.floats(),
            st.binary(max_size=5),
            st.none(),
        ),
        max_size=6,
    )
)
def test_fuzz_structured_payloads_decode_to_valid_messages_or_fail_cleanly(obj):
    payload = msgspec.msgpack.encode(obj)
    try:
        msg = decode_payload(payload)
    except MalformedFrameError:
        return
    assert isinstance(msg, msgspec.Struct)
