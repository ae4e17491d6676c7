"""sqlite store: durability settings, conditional upserts, restart recovery, claims."""

from __future__ import annotations

from runtime.node.store import ChannelRecord, Store, VoucherRecord


def test_file_store_is_wal_and_synchronous_full(tmp_path):
    store = Store(tmp_path / "node.sqlite")
    assert store.journal_mode == "wal"
    assert store.synchronous == 2


def test_only_a_higher_voucher_replaces_the_stored_one(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    assert store.record_vouchers([VoucherRecord(1, "received", 100, b"a" * 65)]) == 1
    assert store.record_vouchers([VoucherRecord(1, "received", 50, b"b" * 65)]) == 0
    assert store.record_vouchers([VoucherRecord(1, "received", 100, b"c" * 65)]) == 0
    assert store.record_vouchers([VoucherRecord(1, "received", 2**63 + 5, b"d" * 65)]) == 1
    got = store.latest("received")[1]
    assert got.cumulative == 2**63 + 5 and got.signature == b"d" * 65 and got.count == 2


def test_a_batch_keeps_the_highest_per_channel_and_roles_are_separate(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    batch = [VoucherRecord(1, "received", v, bytes([v]) * 65) for v in (5, 9, 7)]
    batch.append(VoucherRecord(1, "sent", 3, b"s" * 65))
    assert store.record_vouchers(batch) == 2
    assert store.latest("received")[1].cumulative == 9
    assert store.latest("sent")[1].cumulative == 3


def test_restart_recovers_vouchers_channels_and_claims(tmp_path):
    path = tmp_path / "s.sqlite"
    store = Store(path)
    store.save_channel(ChannelRecord(4, "payee", "n1", "0xpayer", "0xpayee", 10**18))
    store.record_vouchers([VoucherRecord(4, "received", 700, b"v" * 65), VoucherRecord(5, "received", 10, b"w" * 65)])
    store.mark_claimed({5: 10}, tx_hash="0xabc", amount=10, gas_used=50_000)
    del store  # no close: what a kill -9 leaves behind
    again = Store(path)
    assert [c.channel_id for c in again.channels("payee")] == [4]
    assert {v.channel_id: v.cumulative for v in again.unclaimed()} == {4: 700}
    assert again.claims() == [("0xabc", 1, 10, 50_000)]
    assert again.record_vouchers([VoucherRecord(4, "received", 600, b"x" * 65)]) == 0  # mirror reloaded


def test_mark_claimed_never_lowers(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    store.record_vouchers([VoucherRecord(1, "received", 100, b"a" * 65)])
    store.mark_claimed({1: 100})
    store.mark_claimed({1: 40})
    assert store.latest("received")[1].claimed == 100 and store.unclaimed() == []
