"""Vouchers signed and verified per second in Python: ``runtime.chain.vouchers`` against ``eth_account``.

``python -m eval.bench vouchers [--json OUT]`` measures, in one run and on the same vouchers:

* **sign**: ``VoucherSigner.sign(channel_id, cumulative)`` (EIP-712 digest with a precomputed domain
  separator, then a coincurve recoverable signature);
* **verify**: ``VoucherVerifier.verify`` (digest, public-key recovery, address comparison);
* the reference, ``eth_account``'s ``Account.sign_typed_data`` for the same ``Voucher`` type: the goal
  is at least 15,000/s each and at least 5x this rate;
* for information, ``eth_account``'s verification (``encode_typed_data`` + ``Account.recover_message``
  + comparison) and our verification's ratio to it.

Both sides produce byte-identical signatures (RFC 6979 nonces), which the benchmark checks. Every round
times all four back to back; a rate is the best round (the least disturbed by other load on the
machine) and a ratio is the median of the per-round ratios (both sides under the same load).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data

from runtime.chain.anvil import DEV_PRIVATE_KEYS
from runtime.chain.vouchers import VoucherSigner, VoucherVerifier

CHAIN_ID = 31337
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
GOAL_PER_SECOND = 15_000
GOAL_RATIO = 5.0
_TYPES = {"Voucher": [{"name": "channelId", "type": "uint256"}, {"name": "cumulativeAmount", "type": "uint256"}]}
_DOMAIN = {"name": "StreamChannels", "version": "1", "chainId": CHAIN_ID, "verifyingContract": CONTRACT}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds this benchmark's options."""
    parser.add_argument("--vouchers", type=int, default=3_000, help="vouchers per timed round (ours)")
    parser.add_argument("--reference-vouchers", type=int, default=500, help="vouchers per round (eth_account)")
    parser.add_argument(
        "--rounds", type=int, default=9, help="interleaved rounds: best rate, median of per-round ratios"
    )


def _timed_rate(fn: Callable[[int], object], count: int) -> float:
    start = time.perf_counter()
    for i in range(count):
        fn(i)
    return count / (time.perf_counter() - start)


def _interleaved(
    fns: dict[str, tuple[Callable[[int], object], int]], rounds: int
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Runs every function once per round, back to back, so each round's ratios share the same load.

    Returns each function's best rate and the per-round rates.
    """
    per_round: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, (fn, count) in fns.items():
            per_round[name].append(_timed_rate(fn, count))
    return {name: max(rates) for name, rates in per_round.items()}, per_round


def _median_ratio(ours: list[float], reference: list[float]) -> float:
    return round(statistics.median(a / b for a, b in zip(ours, reference, strict=True)), 2)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measures both implementations and returns rates, ratios and whether the goals hold."""
    key = DEV_PRIVATE_KEYS[0]
    signer = VoucherSigner(key, CHAIN_ID, CONTRACT)
    verifier = VoucherVerifier(CHAIN_ID, CONTRACT)
    payer = signer.address
    payer_bytes = bytes.fromhex(payer[2:])
    account = Account.from_key(key)
    base = 10**15  # cumulative amounts in wei

    def ours_sign(i: int) -> bytes:
        return signer.sign(7, base + i)

    def ref_sign(i: int) -> bytes:
        message = {"channelId": 7, "cumulativeAmount": base + i}
        return bytes(account.sign_typed_data(_DOMAIN, _TYPES, message).signature)

    count, ref_count = args.vouchers, args.reference_vouchers
    signatures = [ours_sign(i) for i in range(count)]
    for i in range(0, ref_count, max(1, ref_count // 20)):  # same bytes both ways
        if ref_sign(i) != signatures[i]:
            raise AssertionError(f"signatures differ from eth_account at voucher {i}")

    def ours_verify(i: int) -> bool:
        ok = verifier.verify(7, base + i, signatures[i], payer_bytes)
        if not ok:
            raise AssertionError("a valid voucher failed to verify")
        return ok

    def ref_verify(i: int) -> bool:
        message = encode_typed_data(_DOMAIN, _TYPES, {"channelId": 7, "cumulativeAmount": base + i})
        ok = Account.recover_message(message, signature=signatures[i]) == payer
        if not ok:
            raise AssertionError("eth_account failed to verify a valid voucher")
        return ok

    best, per_round = _interleaved(
        {
            "sign": (ours_sign, count),
            "sign_reference": (ref_sign, ref_count),
            "verify": (ours_verify, count),
            "verify_reference": (ref_verify, ref_count),
        },
        args.rounds,
    )
    result: dict[str, Any] = {f"{name}_per_s": round(rate) for name, rate in best.items()}
    # The goal: each rate >= 15,000/s and >= 5x eth_account's typed-data *signing* rate.
    # Ratios are medians of per-round ratios (both sides measured back to back under the same load).
    result["sign_ratio"] = _median_ratio(per_round["sign"], per_round["sign_reference"])
    result["verify_ratio"] = _median_ratio(per_round["verify"], per_round["sign_reference"])
    # For information: against eth_account's own verification (encode + recover + compare).
    result["verify_vs_reference_verify"] = _median_ratio(per_round["verify"], per_round["verify_reference"])
    result["goal"] = {"per_s": GOAL_PER_SECOND, "ratio": GOAL_RATIO, "ratio_against": "eth_account sign_typed_data"}
    result["meets_goal"] = all(
        (
            result["sign_per_s"] >= GOAL_PER_SECOND,
            result["verify_per_s"] >= GOAL_PER_SECOND,
            result["sign_ratio"] >= GOAL_RATIO,
            result["verify_ratio"] >= GOAL_RATIO,
        )
    )
    result["vouchers"] = {"ours": count, "reference": ref_count, "rounds": args.rounds}
    print(
        f"  sign    {result['sign_per_s']:>8,}/s   "
        f"eth_account sign_typed_data {result['sign_reference_per_s']:>7,}/s   "
        f"x{result['sign_ratio']}"
    )
    print(f"  verify  {result['verify_per_s']:>8,}/s   (x{result['verify_ratio']} eth_account typed-data signing)")
    print(
        f"          eth_account encode+recover {result['verify_reference_per_s']:>7,}/s   "
        f"x{result['verify_vs_reference_verify']}"
    )
    print(
        f"  goal: >= {GOAL_PER_SECOND:,}/s each and >= {GOAL_RATIO}x eth_account typed-data signing: "
        f"{'met' if result['meets_goal'] else 'NOT met'}"
    )
    return result
