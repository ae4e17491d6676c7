"""The node's money: what it owes its downstream peers and what its upstream peers owe it (sans-IO).

One :class:`Account` per neighbour holds both directions of the money between this node and it
(we pay them through ``pay_channel``; they pay us through ``recv_channel``); :class:`Ledger` holds the
rules. The ledger never touches a socket, a clock or a disk: :class:`runtime.node.protocol.NodeCore`
calls it with the time and what it verified, and carries out what it answers (a voucher to store
then send, a reason to refuse a frame, whether to pay now).

**The credit rule** (why honest ledgers reconcile): the payee books a hop's charge as owed when it
relays the piece's receipt upstream, on a connection still up, no later than ``deadline + grace +
late_receipt_window_s / 2`` (its own record's relay cut-off); the payer pays a receipt that verifies
against a record it keeps until ``deadline + grace + late_receipt_window_s`` — live, or already
counted lost by its timeout or a loss report (then it is paid but memory keeps the loss). Both sides
use the piece's own deadline, so as long as a receipt takes less than half the window to cross one
link, every receipt the payee booked is one the payer pays, exactly once (the record leaves custody
when paid; a replay finds only the resolved id). We chose this over "credit only when the upstream
confirms" because it needs no new frame and no extra round trip, and a late receipt is genuine
evidence of a delivery that an honest payer should pay. The receipts on the wire when a link breaks
(a crash, a close) were booked by the payee but may never reach the payer: when a payer's link
breaks, the unpaid credit booked in its last ``reconcile_window_s`` is forgiven (the payer pays in the
order receipts arrive, so what it has not paid is the newest), so the two ledgers agree again; a
payer that breaks its link on purpose gains at most that window's credit each time.

**Payments**: in mode ``on_delivery`` the payer keeps an accepted charge pending and pays it only
when a valid receipt for that piece comes back through that payee; a charge without a receipt by
``deadline + grace + late_receipt_window_s`` is never paid, and the payee counts a charge as owed
(unpaid credit) only once it has passed the piece's receipt upstream. In mode ``per_hop`` the payer
pays at the ack and the payee books the charge when it has taken the piece in. Paying means raising
the cumulative amount and signing a voucher; the payee verifies it (right channel, strictly
increasing, within the deposit, signed by the channel's payer) and acknowledges it only once stored.

**Invariants** (of each account, between two honest nodes):

* ``pay_cumulative`` is the highest voucher this node signed (from its own store after a restart),
  never a peer's ``vack``: it only grows, by accepted charges (``accepted_wei``), and a ``vack``
  above it, or naming an amount this node never signed, moves nothing (``forged vack``);
* ``recv_paid`` is the highest verified voucher held, ``owed >= recv_paid`` (what was paid was owed,
  also what a previous life booked), and ``owed - recv_paid`` is the unpaid credit, checked against
  ``unpaid_limit_wei`` by the caller when a piece arrives;
* at quiescence (no piece in flight, no receipt or voucher on the wire, no link broken with
  credit in its window) the payee's ``owed`` equals the payer's ``pay_cumulative`` to the wei, and
  the payer's ``pay_pending`` is 0.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from runtime.node.store import VoucherRecord
from runtime.node.wire import MAX_U64, Voucher, VoucherAck

__all__ = ["SIGNED_KEPT", "Account", "Ledger"]

#: Signed cumulatives kept per peer until the payee confirms them.
SIGNED_KEPT = 4096


@dataclass
class Account:
    """The money between this node and one neighbour, both ways."""

    peer: str = ""
    # we pay them
    pay_channel: int | None = None
    pay_deposit: int = 0
    pay_cumulative: int = 0  # the highest voucher this node signed to them
    pay_confirmed: bool = False  # the payee answered our `channel` frame on this link
    pay_pending: int = 0  # acked charges awaiting a receipt (on_delivery)
    signed: deque = field(default_factory=lambda: deque(maxlen=SIGNED_KEPT))  # cumulatives signed, unacked
    pay_acked: int = 0  # highest amount of ours the payee confirmed
    accepted_wei: int = 0  # charges this node accepted to pay (the payer's own ledger)
    # they pay us
    recv_channel: int | None = None
    recv_deposit: int = 0
    recv_payer: str = ""
    recv_paid: int = 0  # the highest verified voucher held
    owed: int = 0  # what they owe us in all (booked credit)
    recent_credit: deque = field(default_factory=lambda: deque(maxlen=4096))  # (time, wei) credit booked lately

    @property
    def unpaid_wei(self) -> int:
        """What the peer owes us beyond its latest voucher."""
        return max(0, self.owed - self.recv_paid)


class Ledger:
    """The payment rules of one node over its accounts (see the module docstring).

    :param on_delivery: the payment mode is ``on_delivery`` (else ``per_hop``).
    :param reconcile_window_s: credit booked this recently is forgiven when a payer's link breaks.
    :param stats: the node's counters; the ledger keeps its money counters there.
    :param signer: ``runtime.chain.vouchers.VoucherSigner`` of this node's key (None: cannot pay).
    :param verifier: ``runtime.chain.vouchers.VoucherVerifier`` of the channel contract.
    :param received: vouchers this node holds as payee (from the store after a restart); updated.
    :param log: ``log(event, **fields)``.
    """

    def __init__(
        self,
        on_delivery: bool,
        reconcile_window_s: float,
        stats: dict[str, float],
        signer=None,
        verifier=None,
        received: dict[int, VoucherRecord] | None = None,
        log: Callable[..., None] | None = None,
    ) -> None:
        self.on_delivery = on_delivery
        self.reconcile_window_s = reconcile_window_s
        self.stats = stats
        self.signer = signer
        self.verifier = verifier
        self.received: dict[int, VoucherRecord] = received if received is not None else {}
        self.log = log or (lambda event, **fields: None)

    # ------------------------------------------------------------------ payee side

    def earn(self, a: Account, charge: int) -> None:
        """per_hop: a piece of ``a``'s was taken in, its charge is owed (on_delivery: at its receipt)."""
        if not self.on_delivery:
            a.owed += charge
            self.stats["earned_wei"] += charge

    def credit(self, a: Account | None, charge: int, linked: bool, now: float) -> None:
        """on_delivery: the upstream ``a`` now owes ``charge``, the charge of a piece whose receipt
        we sent it; ``linked``: on the connection that piece came on, still up."""
        if not self.on_delivery or not charge or a is None:
            return
        if not linked:  # gone since: the receipt never reached it, so it cannot pay for it
            self.stats["uncredited_for_lack_of_receipt_wei"] += charge
            return
        a.owed += charge
        self.stats["earned_wei"] += charge
        a.recent_credit.append((now, charge))

    def forfeit(self, charge: int) -> None:
        """A charge to our upstream whose piece will have no receipt: never owed in on_delivery."""
        if self.on_delivery and charge:
            self.stats["uncredited_for_lack_of_receipt_wei"] += charge

    def recredit(self, a: Account | None, charge: int, linked: bool, now: float) -> None:
        """A late receipt relayed upstream in time: the charge forfeited at its loss is credited."""
        if charge:
            self.stats["uncredited_for_lack_of_receipt_wei"] -= charge
            self.credit(a, charge, linked, now)

    def forgive_unacknowledged(self, a: Account, now: float) -> None:
        """The link to payer ``a`` broke: the receipts relayed to it in the last
        ``reconcile_window_s`` may have died on the wire or in its crash, so the credit they booked
        and it has not paid (it pays in the order receipts come, so the unpaid part is the newest) is
        forgiven; older unpaid credit stands. A payer that drops its link on purpose gains at most one
        window's worth of credit each time (bounded by its credit limit)."""
        cutoff = now - self.reconcile_window_s
        recent = sum(w for t, w in a.recent_credit if t >= cutoff)
        a.recent_credit.clear()
        forgiven = min(recent, max(0, a.owed - a.recv_paid))
        if forgiven > 0:
            a.owed -= forgiven
            self.stats["forgiven_on_disconnect_wei"] += forgiven

    def channel_checked(self, a: Account, channel_id: int, deposit: int, payer: str) -> None:
        """The chain confirmed ``a``'s channel to us: what we hold on it counts as paid (and owed)."""
        a.recv_channel, a.recv_deposit, a.recv_payer = channel_id, deposit, payer
        held = self.received.get(channel_id)
        if held is not None:
            a.recv_paid = max(a.recv_paid, held.cumulative)
        a.owed = max(a.owed, a.recv_paid)

    def on_voucher(self, a: Account, v: Voucher) -> tuple[str | None, VoucherRecord | None]:
        """A voucher from payer ``a``: ``(violation reason, None)`` or ``(None, record)`` — store the
        record, then acknowledge it with :meth:`vack`."""
        if a.recv_channel is None:
            return "voucher before channel: no verified channel", None
        if v.channel_id != a.recv_channel:
            return f"voucher for another channel: {v.channel_id}, expected {a.recv_channel}", None
        if v.cumulative_wei <= a.recv_paid:
            return f"replayed voucher: {v.cumulative_wei} <= {a.recv_paid} already held", None
        if v.cumulative_wei > a.recv_deposit:
            return f"voucher above deposit: {v.cumulative_wei} > {a.recv_deposit}", None
        if self.verifier is None or not self.verifier.verify(v.channel_id, v.cumulative_wei, v.signature, a.recv_payer):
            return f"bad signature: voucher for channel {v.channel_id} not signed by its payer", None
        a.recv_paid = v.cumulative_wei
        a.owed = max(a.owed, a.recv_paid)  # what was paid was owed (also what a previous life booked)
        self.stats["vouchers_received"] += 1
        record = VoucherRecord(v.channel_id, "received", v.cumulative_wei, bytes(v.signature))
        self.received[v.channel_id] = record
        return None, record

    @staticmethod
    def vack(a: Account) -> VoucherAck:
        """Our acknowledgement of the highest voucher held from ``a``."""
        return VoucherAck(a.recv_channel, a.recv_paid)

    # ------------------------------------------------------------------ payer side

    def set_pay_channel(self, a: Account, channel_id: int, deposit: int, cumulative: int = 0) -> None:
        """We pay ``a`` through ``channel_id`` (opened on chain or restored from the store)."""
        a.pay_channel, a.pay_deposit = channel_id, deposit
        a.pay_cumulative = max(a.pay_cumulative, cumulative)
        a.pay_confirmed = False

    def accept_charge(self, a: Account, charge: int, late: bool = False) -> bool:
        """A checked, non-zero charge of ``a`` for a piece handed to it: True when it is to be paid
        now (per_hop); on_delivery it waits for the piece's receipt (``late``: lost already, paid only
        if its receipt comes within the late window)."""
        if self.on_delivery:
            if late:
                self.stats["unpaid_for_lack_of_receipt_wei"] += charge
            else:
                a.pay_pending += charge
            return False
        a.accepted_wei += charge
        return True

    def settle(self, a: Account, charge: int, delivered: bool) -> bool:
        """A pending charge's piece was settled: True when it is to be paid now (delivered)."""
        a.pay_pending = max(0, a.pay_pending - charge)
        if delivered:
            a.accepted_wei += charge
            return True
        self.stats["unpaid_for_lack_of_receipt_wei"] += charge
        return False

    def settle_late(self, a: Account, charge: int) -> None:
        """A genuine receipt within the late window for a charge counted unpaid: it is to be paid now."""
        self.stats["unpaid_for_lack_of_receipt_wei"] -= charge
        self.stats["late_receipts_paid_wei"] += charge
        a.accepted_wei += charge

    def pay(self, a: Account, charge: int, linked: bool) -> tuple[VoucherRecord, Voucher] | None:
        """Sign a voucher for what we signed before plus ``charge`` (an accepted charge): our own
        ledger, never a peer's claim, is the base. ``linked``: ``a`` is connected. Returns the record
        to store and the voucher to send then (None: nothing to send)."""
        if self.signer is None or a.pay_channel is None or not linked:
            return None
        cumulative = a.pay_cumulative + charge
        if cumulative > min(a.pay_deposit, MAX_U64):
            self.log("deposit_exhausted", peer=a.peer, channel=a.pay_channel)
            return None
        a.pay_cumulative = cumulative
        a.signed.append(cumulative)
        sig = self.signer.sign(a.pay_channel, cumulative)
        self.stats["vouchers_sent"] += 1
        self.stats["paid_wei"] += charge
        return VoucherRecord(a.pay_channel, "sent", cumulative, sig), Voucher(a.pay_channel, cumulative, sig)

    def on_vack(self, a: Account, msg: VoucherAck, linked: bool) -> tuple[str | None, Voucher | None]:
        """The payee confirms a voucher. It moves no money: it may only confirm an amount this node
        signed (its own ledger, restored from its store), anything else is a forgery. Returns
        ``(reason to ignore the frame, None)`` or ``(None, voucher to send again or None)``."""
        if msg.channel_id != a.pay_channel:
            return f"vack for another channel: {msg.channel_id}", None
        amount = msg.cumulative_wei
        if amount > a.pay_cumulative:  # moves nothing: refused and counted, the link stays for what is honest
            return f"forged vack: {amount} wei above the {a.pay_cumulative} this node signed", None
        again: Voucher | None = None
        if not a.pay_confirmed:
            # the answer to our `channel` frame: the payee's highest held voucher, signed in any life of ours
            a.pay_confirmed = True
            self.log("channel_out", peer=a.peer, channel=msg.channel_id, held=amount)
            if amount < a.pay_cumulative and self.signer is not None and linked:
                # our last voucher never reached it (the link dropped first): send it again, it is owed
                sig = self.signer.sign(a.pay_channel, a.pay_cumulative)
                a.signed.append(a.pay_cumulative)  # so that its vack is recognised as ours
                again = Voucher(a.pay_channel, a.pay_cumulative, sig)
        elif amount < a.pay_acked:
            return f"stale vack: {amount} below {a.pay_acked} already confirmed", None
        elif amount not in a.signed and amount != a.pay_acked:
            return f"forged vack: {amount} wei was never signed by this node", None
        a.pay_acked = max(a.pay_acked, amount)
        while a.signed and a.signed[0] <= a.pay_acked:
            a.signed.popleft()
        return None, again
