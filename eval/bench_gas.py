"""Transaction gas of ``StreamChannels`` (and ``SettlementAVS``) on a real anvil, as receipt ``gasUsed``.

``python -m eval.bench gas [--json OUT] [--report eval/results/gas.md]`` starts anvil, deploys both
contracts, runs each operation several times on fresh channels and reports the gas of each
transaction (the figure a user pays, 21,000 base and calldata included), against the issue's targets
and published figures of comparable contracts (Raiden's TokenNetwork, Sablier's withdraw).

Measurement conditions: every payer and payee is an existing funded account (paying a never-seen
address costs the EVM's 25,000 account-creation surcharge on top, for any ETH transfer); claims are
sent by the payee and closes by the payer, as in normal use.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from eth_account import Account

from runtime.chain.anvil import DEV_PRIVATE_KEYS, Anvil
from runtime.chain.client import SettlementAVSClient, StreamChannelsClient, connect
from runtime.chain.vouchers import VoucherSigner, keccak256, sign_digest

ETH = 10**18

#: operation -> (target gas or None, what the target counts)
TARGETS: dict[str, tuple[int | None, str]] = {
    "open": (100_000, "per transaction"),
    "topUp": (None, "per transaction"),
    "claim (first)": (60_000, "per transaction"),
    "claim (later)": (60_000, "per transaction"),
    "claimBatch x20, one payee": (30_000, "per channel"),
    "startClose": (60_000, "per transaction"),
    "finalizeClose": (60_000, "per transaction"),
    "release": (None, "per transaction"),
}

#: published figures for comparison (transaction gas)
REFERENCES: list[tuple[str, int, str]] = [
    ("Raiden TokenNetwork openChannel", 112_922, "opens without deposit"),
    ("Raiden TokenNetwork setTotalDeposit", 60_110, "the deposit, a second transaction"),
    ("Raiden open + deposit", 112_922 + 60_110, "what `open` with deposit does here in one"),
    ("Sablier withdraw", 56_000, "about; a stream's payee withdrawing, the analogue of `claim`"),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds this benchmark's options."""
    parser.add_argument("--repeats", type=int, default=5, help="transactions measured per operation")
    parser.add_argument("--batch", type=int, default=20, help="channels in the claimBatch measurement")
    parser.add_argument(
        "--report", type=Path, default=Path("eval/results/gas.md"), help="Markdown report to write ('' to skip)"
    )


def _gas(receipt: Any) -> int:
    return int(receipt["gasUsed"])


def _measure(rpc_url: str, repeats: int, batch: int) -> tuple[dict[str, list[int]], str]:
    w3 = connect(rpc_url)
    hardfork = str(w3.provider.make_request("anvil_nodeInfo", [])["result"].get("hardFork", "?"))
    payer_key, payee_key, op_keys = DEV_PRIVATE_KEYS[0], DEV_PRIVATE_KEYS[1], DEV_PRIVATE_KEYS[3:7]
    payer = StreamChannelsClient.deploy(w3, payer_key)
    payee = payer.as_account(payee_key)
    payee_addr = Account.from_key(payee_key).address
    signer = VoucherSigner(payer_key, w3.eth.chain_id, payer.address)
    period = payer.min_challenge_period()
    gas: dict[str, list[int]] = {name: [] for name in TARGETS}

    for _ in range(repeats):
        cid = payer.open(payee_addr, period, 10 * ETH)
        gas["open"].append(_gas(payer.last_receipt))
        gas["topUp"].append(_gas(payer.top_up(cid, ETH)))
        gas["claim (first)"].append(_gas(payee.claim(cid, ETH, signer.sign(cid, ETH))))
        gas["claim (later)"].append(_gas(payee.claim(cid, 2 * ETH, signer.sign(cid, 2 * ETH))))
        gas["startClose"].append(_gas(payer.start_close(cid)))
        w3.provider.make_request("evm_increaseTime", [period])
        w3.provider.make_request("evm_mine", [])
        gas["finalizeClose"].append(_gas(payer.finalize_close(cid)))
        other = payer.open(payee_addr, period, ETH)
        gas["release"].append(_gas(payee.release(other)))

    for _ in range(max(1, repeats // 2)):
        ids = [payer.open(payee_addr, period, ETH) for _ in range(batch)]
        receipt = payee.claim_batch([(c, ETH // 2, signer.sign(c, ETH // 2)) for c in ids])
        gas["claimBatch x20, one payee"].append(round(_gas(receipt) / batch))

    avs = SettlementAVSClient.deploy(w3, payer_key, epoch_blocks=1)  # one block per epoch
    gas["AVS register"] = [_gas(avs.as_account(k).register(2 * ETH)) for k in op_keys]
    gas["AVS attest (3 of 4 signers)"] = []
    for _ in range(repeats):
        w3.provider.make_request("evm_mine", [])  # an epoch after every bond ...
        epoch = w3.eth.block_number
        w3.provider.make_request("evm_mine", [])  # ... that has ended
        root = keccak256(b"epoch %d" % epoch)
        digest = avs.attestation_digest(epoch, root)
        sigs = {Account.from_key(k).address: sign_digest(k, digest) for k in op_keys[:3]}
        gas["AVS attest (3 of 4 signers)"].append(_gas(avs.attest(epoch, root, sigs)))
    cheat_key = op_keys[3]
    cheat = Account.from_key(cheat_key).address
    root_a, root_b = keccak256(b"a"), keccak256(b"b")
    sig_a = sign_digest(cheat_key, avs.attestation_digest(99, root_a))
    sig_b = sign_digest(cheat_key, avs.attestation_digest(99, root_b))
    gas["AVS slashEquivocation"] = [_gas(avs.slash_equivocation(cheat, 99, root_a, sig_a, root_b, sig_b))]
    return gas, hardfork


def _report(result: dict[str, Any]) -> str:
    lines = [
        "# Gas report: StreamChannels and SettlementAVS",
        "",
        "Produced by `python -m eval.bench gas` (transaction gas = receipt `gasUsed` on anvil "
        f"{result['anvil']}, hardfork {result['hardfork']}; solc {result['solc']}, optimizer on). Median of "
        f"{result['repeats']} transactions per row. Payers and payees are existing accounts; claims are sent by "
        "the payee, closes by the payer.",
        "",
        "| operation | gas | target | counted | within target |",
        "|---|---:|---:|---|:---:|",
    ]
    for name, row in result["operations"].items():
        target = f"{row['target']:,}" if row["target"] else "—"
        ok = "—" if row["ok"] is None else ("yes" if row["ok"] else "**no**")
        lines.append(f"| `{name}` | {row['gas']:,} | {target} | {row['counted']} | {ok} |")
    lines += [
        "",
        "## For comparison",
        "",
        "| contract call | gas | note |",
        "|---|---:|---|",
    ]
    for name, value, note in REFERENCES:
        lines.append(f"| {name} | {value:,} | {note} |")
    ops = result["operations"]
    lines += [
        "",
        f"Opening a funded channel here costs {ops['open']['gas']:,} gas in one transaction, against "
        f"{112_922 + 60_110:,} for Raiden's open plus deposit ({ops['open']['gas'] / (112_922 + 60_110):.0%}). "
        f"A claim costs {ops['claim (first)']['gas']:,} (first) / {ops['claim (later)']['gas']:,} (later), "
        f"against about 56,000 for Sablier's withdraw; batched, a claim costs "
        f"{ops['claimBatch x20, one payee']['gas']:,} per channel.",
        "",
        "Why it is cheap: a channel fits in three storage slots (payer | deposit, payee | claimed | settled, "
        "challengePeriod | closesAt) so a claim reads two slots and rewrites one that is already non-zero; "
        "the channel counter starts at 1 so every `open` rewrites a non-zero slot; the reentrancy guard is "
        "transient storage (EIP-1153); ETH goes out with one `call` that copies no return data; a batch pays "
        "consecutive channels of one payee with a single transfer.",
        "",
        "## SettlementAVS",
        "",
        "| operation | gas |",
        "|---|---:|",
    ]
    for name, value in result["avs"].items():
        lines.append(f"| `{name}` | {value:,} |")
    lines.append("")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measures, prints a table, writes the Markdown report and returns the figures."""
    from runtime.chain.anvil import find_tool

    started = time.perf_counter()
    with Anvil(chain_id=31337) as node:
        samples, hardfork = _measure(node.rpc_url, args.repeats, args.batch)
    import subprocess

    anvil_version = subprocess.run([find_tool("anvil"), "--version"], capture_output=True, text=True, check=False)
    operations: dict[str, dict[str, Any]] = {}
    for name, (target, counted) in TARGETS.items():
        value = int(statistics.median(samples[name]))
        operations[name] = {
            "gas": value,
            "samples": samples[name],
            "target": target,
            "counted": counted,
            "ok": None if target is None else value <= target,
        }
    result: dict[str, Any] = {
        "operations": operations,
        "avs": {name: int(statistics.median(v)) for name, v in samples.items() if name.startswith("AVS")},
        "references": {name: value for name, value, _ in REFERENCES},
        "repeats": args.repeats,
        "batch": args.batch,
        "anvil": anvil_version.stdout.splitlines()[0].split("Version:")[-1].strip() if anvil_version.stdout else "?",
        "hardfork": hardfork,
        "solc": "0.8.37 (solc-js), evm_version prague",
        "seconds": round(time.perf_counter() - started, 1),
    }
    width = max(len(n) for n in [*operations, *result["avs"]])
    for name, row in operations.items():
        target = f"<= {row['target']:,}" if row["target"] else ""
        flag = "" if row["ok"] is None else ("ok" if row["ok"] else "OVER")
        print(f"  {name:<{width}}  {row['gas']:>8,}  {target:<12} {row['counted']:<16} {flag}")
    for name, value in result["avs"].items():
        print(f"  {name:<{width}}  {value:>8,}")
    if args.report and str(args.report):
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(_report(result))
        print(f"wrote {args.report}")
    return result
