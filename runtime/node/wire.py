"""Wire protocol of the live node: length-prefixed, size-limited, strictly decoded msgspec frames.

A frame is a 4-byte big-endian payload length followed by a msgpack payload. The payload is one
of the tagged structs below (``{"t": "<tag>", ...}``); anything else is a protocol error::

    +----------------+---------------------------------------------+
    | length (u32 BE)| msgpack map: {"t": tag, field: value, ...}  |
    +----------------+---------------------------------------------+

============  =====================================================================================
message       meaning
============  =====================================================================================
``hello``     first frame each way: protocol version, node id, payout address, claims, quote, nonce
``auth``      second frame each way: the sender's key signs the other side's nonce, its id and address
``channel``   the payer names the on-chain channel it pays this peer through
``piece``     a story-piece to forward or deliver (id, source, destination, deadline, payload)
``ack``       the receiver took (or refused) a piece and charges ``charge_wei`` for it
``fwd``       the receiver passed the piece on (or delivered it) after ``delay`` steps in its queue
``receipt``   the destination's signed proof of delivery, relayed back hop by hop towards the source
``outcome``   a loss report (``delivered`` must be false: a delivery is proven by a ``receipt`` only)
``quote``     a new price per unit of size, in wei
``voucher``   a cumulative EIP-712 voucher ``(channel_id, cumulative_wei, signature)``
``vack``      the payee stored a voucher (sent only after it is durably in sqlite)
``routes``    distance-vector advertisement: steps from the sender to each destination node
``rating``    trust gossip: the sender's signed custody evidence about its neighbours (at most 8)
``bye``       graceful close, with a reason
============  =====================================================================================

Decoding is strict: unknown tags, unknown or missing fields, wrong types and out-of-range values
raise :class:`ProtocolError` with a one-line reason. :class:`FrameDecoder` never buffers more
than one maximum frame, so a peer cannot make a node hold unbounded memory. Encoding is just as
strict (:func:`encode` checks every outgoing frame against the decoder's own limits and raises
:class:`OutgoingFrameError`), so a node never emits a frame its neighbours would have to reject.
"""

from __future__ import annotations

import struct
from typing import Annotated

import msgspec

__all__ = [
    "DEFAULT_MAX_FRAME",
    "MAX_PROOF",
    "MAX_U64",
    "PROTOCOL_VERSION",
    "Ack",
    "Auth",
    "Bye",
    "ChannelInfo",
    "Forwarded",
    "FrameDecoder",
    "FrameTooLargeError",
    "Hello",
    "MalformedFrameError",
    "Message",
    "Outcome",
    "OutgoingFrameError",
    "Piece",
    "ProtocolError",
    "Quote",
    "Rating",
    "RatingItem",
    "Receipt",
    "Routes",
    "Voucher",
    "VoucherAck",
    "auth_digest",
    "decode_payload",
    "encode",
]

#: Version spoken by this node; a hello with another version is refused.
PROTOCOL_VERSION = 1
#: Default maximum payload size of one frame (bytes).
DEFAULT_MAX_FRAME = 64 * 1024
_HEADER = struct.Struct(">I")

# msgpack integers stop at 2**64 - 1: amounts on the wire are therefore at most ~18.4 ETH per
# channel (the contract caps a deposit at 2**88 - 1 wei; larger channels would need bytes here).
#: msgpack's largest unsigned integer (msgspec cannot express it as a bound; the format enforces it).
MAX_U64 = 2**64 - 1
U64 = Annotated[int, msgspec.Meta(ge=0)]
U256 = U64
NodeId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
Address = Annotated[str, msgspec.Meta(pattern=r"^0x[0-9a-fA-F]{40}$")]
OptAddress = Annotated[str, msgspec.Meta(pattern=r"^(0x[0-9a-fA-F]{40})?$")]
Hash32 = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
Signature = Annotated[bytes, msgspec.Meta(min_length=65, max_length=65)]
OptSignature = Annotated[bytes, msgspec.Meta(max_length=65)]
OptNodeId = Annotated[str, msgspec.Meta(max_length=64, pattern=r"^[A-Za-z0-9_.:-]*$")]
NonNegFloat = Annotated[float, msgspec.Meta(ge=0.0, le=1e12)]
Reason = Annotated[str, msgspec.Meta(max_length=200)]
#: Longest Merkle proof a frame may carry (a sealed batch of at most 2**8 signatures).
MAX_PROOF = 8
#: Sibling hashes from a sealed digest to the root its signature covers (``runtime.node.sealing``;
#: empty: the signature is over the digest itself).
Proof = Annotated[tuple[Hash32, ...], msgspec.Meta(max_length=MAX_PROOF)]


class _Msg(msgspec.Struct, tag_field="t", forbid_unknown_fields=True, frozen=True):
    pass


class Hello(_Msg, tag="hello"):
    """First frame on a connection, both ways."""

    version: int
    node_id: NodeId
    address: Address
    claimed_bw: NonNegFloat
    quote_wei: U64
    nonce: Annotated[bytes, msgspec.Meta(min_length=16, max_length=32)]
    listen_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0


class Auth(_Msg, tag="auth"):
    """Proof of identity: the sender's key signs the *receiver's* hello nonce (see :func:`auth_digest`)."""

    signature: Annotated[bytes, msgspec.Meta(min_length=65, max_length=65)]


class ChannelInfo(_Msg, tag="channel"):
    """The payer's on-chain channel to this peer."""

    channel_id: U256


class Piece(_Msg, tag="piece"):
    """A story-piece. ``deadline`` is a wall-clock UNIX time; ``hops`` counts hops so far;
    ``dst_addr`` is the destination's address, whose key must sign the piece's receipt (a hop that
    knows the destination's address itself checks it; empty: the hop must know it)."""

    piece_id: U64
    src: NodeId
    dst: NodeId
    born: NonNegFloat
    deadline: NonNegFloat
    value: NonNegFloat
    size: NonNegFloat
    hops: Annotated[int, msgspec.Meta(ge=0, le=255)]
    payload: Annotated[bytes, msgspec.Meta(max_length=60 * 1024)] = b""
    dst_addr: OptAddress = ""


class Ack(_Msg, tag="ack"):
    """The receiver accepted (``charge_wei`` owed) or refused the piece (``reason``)."""

    piece_id: U64
    accepted: bool
    charge_wei: U64 = 0
    wait: NonNegFloat = 0.0  # steps the piece waited before the receiver started taking it in
    reason: Reason = ""
    #: when the receiver took the piece (its clock) and its custody signature over (piece id, payload
    #: hash, from, to, at) (``runtime.node.acceptance``); empty: no evidence (a refusal, or no key);
    #: ``proof``: the signature covers a batch (``runtime.node.sealing``)
    at: NonNegFloat = 0.0
    custody: OptSignature = b""
    proof: Proof = ()


class Forwarded(_Msg, tag="fwd"):
    """The receiver handed the piece on (or delivered it) after ``delay`` steps in its queue."""

    piece_id: U64
    delay: NonNegFloat


class Outcome(_Msg, tag="outcome"):
    """A piece was lost downstream, relayed back towards its source. ``delivered=True`` decodes but a
    node rejects it as a protocol violation: only a :class:`Receipt` proves a delivery.

    The custody evidence the reporter holds: ``holder``, the node it handed the piece to, which
    accepted it at ``held_at`` with signature ``custody`` (its ack's); empty: the reporter held the
    piece last (it dropped it, could not route it, or holds no acceptance). ``proof``: the
    acceptance's Merkle proof, as its ack carried it."""

    piece_id: U64
    delivered: bool
    holder: OptNodeId = ""
    held_at: NonNegFloat = 0.0
    custody: OptSignature = b""
    proof: Proof = ()


class Receipt(_Msg, tag="receipt"):
    """The destination's proof that it received piece ``piece_id`` (from ``src``, of ``size``, whose
    payload hashes to ``payload_hash``) before its deadline: ``signature`` by the destination's key
    over ``runtime.node.receipts.receipt_digest`` of these fields, or over the root that ``proof``
    folds that digest into (``runtime.node.sealing``). Relayed unchanged, hop by hop."""

    piece_id: U64
    src: NodeId
    dst: NodeId
    payload_hash: Hash32
    size: NonNegFloat
    signature: Signature
    proof: Proof = ()


class Quote(_Msg, tag="quote"):
    """The sender's new price per unit of size (wei)."""

    quote_wei: U64


class Voucher(_Msg, tag="voucher"):
    """A cumulative payment voucher for ``channel_id`` (65-byte EIP-712 signature)."""

    channel_id: U256
    cumulative_wei: U256
    signature: Annotated[bytes, msgspec.Meta(min_length=65, max_length=65)]


class VoucherAck(_Msg, tag="vack"):
    """The payee durably stored the voucher with this cumulative amount."""

    channel_id: U256
    cumulative_wei: U256


class Routes(_Msg, tag="routes"):
    """Distance-vector advertisement: ``dist[node_id]`` steps from the sender to that node."""

    dist: Annotated[dict[NodeId, NonNegFloat], msgspec.Meta(max_length=4096)]


#: Subjects a rating frame may carry (agents.features.SLOTS: the environment's bound).
MAX_RATING_SUBJECTS = 8
#: Version of the rating frame this node speaks.
RATING_VERSION = 1


class RatingItem(msgspec.Struct, array_like=True, forbid_unknown_fields=True, frozen=True):
    """What a reporter says of one neighbour: its custody rate and the samples behind it (capped)."""

    subject: NodeId
    rate: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
    count: Annotated[float, msgspec.Meta(ge=0.0, le=50.0)]


class Rating(_Msg, tag="rating"):
    """Trust gossip (``runtime.node.gossip``): ``reporter``'s direct custody evidence about its
    neighbours, numbered ``seq`` (strictly increasing per reporter), signed with its node key."""

    version: int
    reporter: NodeId
    seq: U64
    items: Annotated[list[RatingItem], msgspec.Meta(max_length=MAX_RATING_SUBJECTS)]
    signature: Signature


class Bye(_Msg, tag="bye"):
    """Graceful close."""

    reason: Reason = ""


Message = (
    Hello | Auth | ChannelInfo | Piece | Ack | Forwarded | Outcome | Receipt | Quote | Voucher | VoucherAck
    | Routes | Rating | Bye
)  # fmt: skip

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Message)


class ProtocolError(Exception):
    """A peer broke the protocol; ``str(err)`` is a one-line reason fit for a log."""


class MalformedFrameError(ProtocolError):
    """The payload is not a valid message."""


class FrameTooLargeError(ProtocolError):
    """The announced payload length exceeds the maximum frame size."""


class OutgoingFrameError(ProtocolError):
    """This node was about to send a frame its peer's decoder would reject (a bug or a poisoned input)."""


def auth_digest(peer_nonce: bytes, node_id: str, address: str) -> bytes:
    """What a node signs to prove it holds ``address``'s key, bound to the other side's fresh nonce
    (so a recorded ``auth`` is worthless on another connection)."""
    from runtime.chain.vouchers import keccak256

    return keccak256(b"OpenStreaming auth v1\x00" + peer_nonce + node_id.encode() + b"\x00" + address.lower().encode())


def encode(msg: Message, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """One complete frame (header and payload) for ``msg``, checked with the decoder's own limits.

    Raises :class:`OutgoingFrameError` (never ``OverflowError``) when ``msg`` holds a value the wire
    cannot carry (an amount above 2**64 - 1, a distance above the cap, an over-long map) or the
    frame exceeds ``max_frame``: the neighbour's strict decoder would reject it and drop this node.
    """
    try:
        payload = _encoder.encode(msg)
    except (OverflowError, TypeError, msgspec.EncodeError) as exc:
        raise OutgoingFrameError(f"unsendable {type(msg).__name__}: {exc}"[:200]) from None
    if len(payload) > max_frame:
        raise OutgoingFrameError(f"unsendable {type(msg).__name__}: {len(payload)} bytes exceed {max_frame}")
    try:
        _decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise OutgoingFrameError(f"unsendable {type(msg).__name__}: {' '.join(str(exc).split())[:160]}") from None
    return _HEADER.pack(len(payload)) + payload


def decode_payload(payload: bytes) -> Message:
    """Strictly decode one payload; raises :class:`MalformedFrameError` with the reason."""
    try:
        return _decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MalformedFrameError(f"malformed frame: {' '.join(str(exc).split())[:160]}") from None


class FrameDecoder:
    """Incremental frame parser: feed bytes, get messages.

    :param max_frame: largest payload accepted; a larger announced length raises
        :class:`FrameTooLargeError` before any of its bytes are buffered.
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        """Consume ``data``; return every complete message now available, in order."""
        self._buf += data
        out: list[Message] = []
        buf = self._buf
        pos = 0
        while len(buf) - pos >= 4:
            (length,) = _HEADER.unpack_from(buf, pos)
            if length > self.max_frame:
                raise FrameTooLargeError(f"frame of {length} bytes exceeds the limit of {self.max_frame}")
            if len(buf) - pos - 4 < length:
                break
            out.append(decode_payload(bytes(buf[pos + 4 : pos + 4 + length])))
            pos += 4 + length
        if pos:
            del buf[:pos]
        return out

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buf)
