"""Typed Python client for the ``StreamChannels`` and ``SettlementAVS`` contracts (web3.py).

Deploys either contract to any JSON-RPC endpoint (anvil locally, a testnet with ``--rpc-url`` and a
funded key) and wraps every state-changing call as a method that signs locally, sends, waits for
the receipt and returns it. A call the contract would revert raises a :class:`RevertError`
subclass named after the contract's custom error, with the error's arguments decoded::

    w3 = connect("http://127.0.0.1:8545")
    channels = StreamChannelsClient.deploy(w3, payer_key)
    cid = channels.open(payee, challenge_period=3600, deposit=10**18)
    try:
        channels.as_account(payee_key).release(cid)
    except NotPayee as err:
        print(err.error_name, err.error_args)

ABI and bytecode come from Foundry's build output (``contracts/out``); :func:`load_artifact` runs
``forge build`` (offline, through solc-js) when the output is missing or older than the sources.
"""

# The exception classes below carry the Solidity custom errors' exact names (no "Error" suffix).
# ruff: noqa: N818

from __future__ import annotations

import fcntl
import json
import os
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Self

from eth_abi import decode as abi_decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError, Web3RPCError
from web3.logs import DISCARD
from web3.types import TxReceipt

from runtime.chain.anvil import REPO_ROOT, find_tool
from runtime.chain.vouchers import keccak256

__all__ = [
    "CONTRACTS_DIR",
    "ERRORS",
    "AlreadyClosing",
    "AmountExceedsDeposit",
    "Artifact",
    "ChainError",
    "ChallengePeriodActive",
    "ChallengePeriodTooShort",
    "ChannelAlreadySettled",
    "ChannelNotFound",
    "ChannelState",
    "CheckpointUnorderedInsertion",
    "ClaimOutcome",
    "ClaimWindowClosed",
    "DepositTooLarge",
    "ECDSAInvalidSignature",
    "ECDSAInvalidSignatureLength",
    "ECDSAInvalidSignatureS",
    "EmptyRoot",
    "EpochAlreadyFinalized",
    "EpochNotEnded",
    "ExitDelayActive",
    "ExitNotRequested",
    "InsufficientGas",
    "InvalidEpochLength",
    "InvalidOperatorSignature",
    "InvalidPayee",
    "InvalidRecipient",
    "InvalidShortString",
    "InvalidSignature",
    "LengthMismatch",
    "NoStakeForEpoch",
    "NotActiveOperator",
    "NotClosing",
    "NotEquivocation",
    "NotOperator",
    "NotPayee",
    "NotPayer",
    "NothingToWithdraw",
    "OperatorExiting",
    "OperatorSlashed",
    "OperatorsNotSorted",
    "QuorumNotReached",
    "ReentrancyGuardReentrantCall",
    "RevertError",
    "SafeCastOverflowedUintDowncast",
    "SettlementAVSClient",
    "SignerNotPayer",
    "StakeTooLow",
    "StreamChannelsClient",
    "StringTooLong",
    "TransactionFailedError",
    "TransferFailed",
    "build_contracts",
    "connect",
    "decode_revert",
    "load_artifact",
]

CONTRACTS_DIR = REPO_ROOT / "contracts"
_OUT_DIR = CONTRACTS_DIR / "out"

# ----------------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------------


class ChainError(Exception):
    """Anything that went wrong talking to the chain."""


class TransactionFailedError(ChainError):
    """A transaction was mined with status 0 (it reverted on chain after estimating fine)."""

    def __init__(self, tx_hash: str, receipt: TxReceipt) -> None:
        super().__init__(f"transaction {tx_hash} reverted on chain (gasUsed {receipt['gasUsed']})")
        self.tx_hash = tx_hash
        self.receipt = receipt


class RevertError(ChainError):
    """The contract reverted. Subclasses are named after the contract's custom errors.

    :ivar error_name: the custom error's name (or ``"Error"`` / ``"Panic"`` / ``"unknown"``).
    :ivar error_args: the error's arguments by name.
    :ivar data: the raw revert data.
    """

    def __init__(self, error_name: str, error_args: dict[str, Any], data: bytes) -> None:
        args = ", ".join(f"{k}={v!r}" for k, v in error_args.items())
        super().__init__(f"{error_name}({args})")
        self.error_name = error_name
        self.error_args = error_args
        self.data = data


# One class per custom error of StreamChannels and SettlementAVS (and the OpenZeppelin errors
# their ABIs carry). tests/runtime checks that every error in the ABIs has a class here.
class InvalidPayee(RevertError):
    """``open`` with the zero address as payee."""


class ChallengePeriodTooShort(RevertError):
    """``open`` with a challenge period below ``MIN_CHALLENGE_PERIOD``."""


class DepositTooLarge(RevertError):
    """A deposit beyond the contract's uint88 amount range."""


class ChannelNotFound(RevertError):
    """No channel has this id."""


class ChannelAlreadySettled(RevertError):
    """The channel is settled: no more claims, top-ups or closes."""


class AmountExceedsDeposit(RevertError):
    """A voucher for more than the channel's deposit."""


class InvalidSignature(RevertError):
    """A malformed or high-s voucher signature."""


class SignerNotPayer(RevertError):
    """A voucher signed by someone other than the channel's payer."""


class NotPayer(RevertError):
    """Only the channel's payer may do this (``startClose``)."""


class NotPayee(RevertError):
    """Only the channel's payee may do this (``release``)."""


class AlreadyClosing(RevertError):
    """``startClose`` called twice."""


class NotClosing(RevertError):
    """``finalizeClose`` on a channel that is not closing."""


class ChallengePeriodActive(RevertError):
    """``finalizeClose`` before ``closesAt``."""


class LengthMismatch(RevertError):
    """Batch arrays of different lengths."""


class TransferFailed(RevertError):
    """``withdraw``: the named recipient refused the ETH (the credit stays)."""


class ClaimWindowClosed(RevertError):
    """A claim at or after ``closes_at``: the challenge period is over, only ``finalizeClose`` is left."""


class NothingToWithdraw(RevertError):
    """``withdraw`` by an account without credit."""


class InvalidRecipient(RevertError):
    """``withdraw`` to the zero address."""


class InsufficientGas(RevertError):
    """A payment push failed with too little gas left: resend with more gas."""


class EpochNotEnded(RevertError):
    """``attest`` (or an epoch view) for an epoch that has not ended."""


class NoStakeForEpoch(RevertError):
    """An attesting operator whose bond changed during or after the epoch began."""


class InvalidEpochLength(RevertError):
    """``SettlementAVS`` deployed with zero blocks per epoch."""


class StakeTooLow(RevertError):
    """An operator bond below ``MIN_STAKE``."""


class OperatorSlashed(RevertError):
    """A slashed operator tried to register again."""


class OperatorExiting(RevertError):
    """The operator is exiting."""


class NotOperator(RevertError):
    """The address has no bond."""


class ExitNotRequested(RevertError):
    """``withdrawStake`` without ``requestExit``."""


class ExitDelayActive(RevertError):
    """``withdrawStake`` before the exit delay is over."""


class EmptyRoot(RevertError):
    """A zero settlement root."""


class EpochAlreadyFinalized(RevertError):
    """The epoch already has a final root."""


class OperatorsNotSorted(RevertError):
    """Attesting operators not strictly ascending."""


class NotActiveOperator(RevertError):
    """An attesting operator that is not active."""


class InvalidOperatorSignature(RevertError):
    """An operator signature that does not verify."""


class QuorumNotReached(RevertError):
    """Signers hold less than two thirds of the active stake."""


class NotEquivocation(RevertError):
    """Equivocation evidence with two equal roots."""


class ReentrancyGuardReentrantCall(RevertError):
    """A reentrant call was blocked."""


class ECDSAInvalidSignature(RevertError):
    """OpenZeppelin ECDSA: invalid signature."""


class ECDSAInvalidSignatureLength(RevertError):
    """OpenZeppelin ECDSA: invalid signature length."""


class ECDSAInvalidSignatureS(RevertError):
    """OpenZeppelin ECDSA: high-s signature."""


class SafeCastOverflowedUintDowncast(RevertError):
    """OpenZeppelin SafeCast (stake checkpoints): a value beyond the checkpoint's width."""


class CheckpointUnorderedInsertion(RevertError):
    """OpenZeppelin Checkpoints (stake history): a checkpoint older than the last one."""


class StringTooLong(RevertError):
    """OpenZeppelin ShortStrings (EIP712 domain strings): string too long."""


class InvalidShortString(RevertError):
    """OpenZeppelin ShortStrings (EIP712 domain strings): invalid short string."""


class NettingBindingRefused(RevertError):
    """StreamChannels.bindNetting: only the deployer, once, to a non-zero address."""


class NotNetting(RevertError):
    """StreamChannels.settleNet: only the bound NetSettlement may call it."""


class JudgeBindingRefused(RevertError):
    """SettlementAVS.bindJudge: only the deployer, once, to a non-zero address."""


class NotJudge(RevertError):
    """SettlementAVS.slashWrongRoot: only the bound NetSettlement may call it."""


class RootExists(RevertError):
    """NetSettlement: the epoch already has a live (not voided) root."""


class BadSignerList(RevertError):
    """NetSettlement: signer and signature lists differ in length or are too long."""


class NoStake(RevertError):
    """NetSettlement: a listed signer has no stake in the epoch."""


class NoRoot(RevertError):
    """NetSettlement: the epoch has no root."""


class RootIsVoided(RevertError):
    """NetSettlement: the epoch's root was voided by a fraud proof."""


class ChallengeWindowOpen(RevertError):
    """NetSettlement: the root cannot pay before its challenge window ends."""


class ChallengeWindowClosed(RevertError):
    """NetSettlement: the root can no longer be challenged."""


class InvalidProof(RevertError):
    """NetSettlement: the leaf and proof do not lead to the root."""


class MalformedLeaf(RevertError):
    """NetSettlement: a leaf with too many or unordered entries."""


class SignersMismatch(RevertError):
    """NetSettlement: the signer list differs from the one recorded with the root."""


class NotFraud(RevertError):
    """NetSettlement: the challenged leaf or entry is correct."""


class EntryOutOfRange(RevertError):
    """NetSettlement: the entry index is past the leaf's entries."""


class InvalidWindow(RevertError):
    """NetSettlement: a zero challenge window."""


#: custom error name -> exception class
ERRORS: dict[str, type[RevertError]] = {cls.__name__: cls for cls in RevertError.__subclasses__()}

# ----------------------------------------------------------------------------------------------------
# artifacts
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Artifact:
    """A compiled contract: its name, ABI and creation bytecode."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str


def _artifact_path(name: str) -> Path:
    return _OUT_DIR / f"{name}.sol" / f"{name}.json"


def _stale(name: str) -> bool:
    path = _artifact_path(name)
    if not path.is_file():
        return True
    built = path.stat().st_mtime
    return any(src.stat().st_mtime > built for src in (CONTRACTS_DIR / "src").glob("*.sol"))


def build_contracts() -> None:
    """Runs ``forge build`` in ``contracts/`` (offline, through solc-js), one process at a time."""
    CONTRACTS_DIR.joinpath("cache").mkdir(exist_ok=True)
    with open(CONTRACTS_DIR / "cache" / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # pytest-xdist workers may race here
        env = dict(os.environ)
        env["PATH"] = f"{REPO_ROOT / 'node_modules' / '.bin'}{os.pathsep}{env.get('PATH', '')}"
        result = subprocess.run(
            [find_tool("forge"), "build", "--skip", "test", "--skip", "script"],
            cwd=CONTRACTS_DIR,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ChainError(f"forge build failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        # forge leaves up-to-date artifacts untouched; mark them fresh so _stale stops asking.
        for artifact in _OUT_DIR.glob("*.sol/*.json"):
            artifact.touch()


@cache
def load_artifact(name: str) -> Artifact:
    """ABI and bytecode of ``contracts/src/<name>.sol``, building first if needed."""
    if _stale(name):
        build_contracts()
    data = json.loads(_artifact_path(name).read_text())
    return Artifact(name=name, abi=data["abi"], bytecode=data["bytecode"]["object"])


# ----------------------------------------------------------------------------------------------------
# revert decoding
# ----------------------------------------------------------------------------------------------------


def _canonical_type(param: dict[str, Any]) -> str:
    kind = param["type"]
    if kind.startswith("tuple"):
        inner = ",".join(_canonical_type(c) for c in param["components"])
        return f"({inner}){kind[5:]}"
    return kind


@cache
def _error_table(names: tuple[str, ...]) -> dict[bytes, tuple[str, list[str], list[str]]]:
    table: dict[bytes, tuple[str, list[str], list[str]]] = {}
    for name in names:
        for item in load_artifact(name).abi:
            if item["type"] != "error":
                continue
            types = [_canonical_type(p) for p in item["inputs"]]
            selector = keccak256(f"{item['name']}({','.join(types)})".encode())[:4]
            table[selector] = (item["name"], [p["name"] or f"arg{i}" for i, p in enumerate(item["inputs"])], types)
    return table


def _revert_data(exc: BaseException) -> bytes | None:
    data = getattr(exc, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return None
    if isinstance(exc, Web3RPCError) and isinstance(exc.rpc_response, dict):
        error = exc.rpc_response.get("error") or {}
        raw = error.get("data") if isinstance(error, dict) else None
        if isinstance(raw, str) and raw.startswith("0x"):
            return bytes.fromhex(raw[2:])
    return None


def _pretty(abi_type: str, value: Any) -> Any:
    if abi_type == "address":
        return to_checksum_address(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value


def decode_revert(data: bytes, contracts: Iterable[str] = ("StreamChannels", "SettlementAVS")) -> RevertError:
    """Turns raw revert data into the matching :class:`RevertError` subclass."""
    selector = data[:4]
    known = _error_table(tuple(contracts)).get(selector)
    if known is not None:
        name, arg_names, types = known
        values = abi_decode(types, data[4:]) if types else ()
        args = {k: _pretty(t, v) for k, t, v in zip(arg_names, types, values, strict=True)}
        return ERRORS.get(name, RevertError)(name, args, data)
    if selector == bytes.fromhex("08c379a0"):
        (reason,) = abi_decode(["string"], data[4:])
        return RevertError("Error", {"reason": reason}, data)
    if selector == bytes.fromhex("4e487b71"):
        (code,) = abi_decode(["uint256"], data[4:])
        return RevertError("Panic", {"code": code}, data)
    return RevertError("unknown", {"data": "0x" + data.hex()}, data)


# ----------------------------------------------------------------------------------------------------
# clients
# ----------------------------------------------------------------------------------------------------


def connect(rpc_url: str, timeout: float = 30.0) -> Web3:
    """A Web3 connected to ``rpc_url`` over HTTP."""
    return Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))


def _account(key: LocalAccount | bytes | str) -> LocalAccount:
    return key if isinstance(key, LocalAccount) else Account.from_key(key)


class _Client:
    """Shared plumbing: local signing, gas estimation, revert decoding, receipts."""

    CONTRACT: ClassVar[str]

    def __init__(self, w3: Web3, address: str, account: LocalAccount | bytes | str | None = None) -> None:
        self.w3 = w3
        self.address = to_checksum_address(address)
        self.account = _account(account) if account is not None else None
        self.contract: Contract = w3.eth.contract(address=self.address, abi=load_artifact(self.CONTRACT).abi)
        self.chain_id: int = w3.eth.chain_id
        #: the receipt of the last transaction this client sent
        self.last_receipt: TxReceipt | None = None

    @classmethod
    def deploy(
        cls, w3: Web3, account: LocalAccount | bytes | str, *constructor_args: Any, timeout: float = 120.0
    ) -> Self:
        """Deploys the contract from ``account`` (with ``constructor_args``) and returns a client bound
        to it and that account."""
        sender = _account(account)
        artifact = load_artifact(cls.CONTRACT)
        factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        tx = factory.constructor(*constructor_args).build_transaction(
            {"from": sender.address, "nonce": w3.eth.get_transaction_count(sender.address, "pending")}
        )
        signed = sender.sign_transaction(tx)
        tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout)
        if receipt["status"] != 1 or receipt["contractAddress"] is None:
            raise TransactionFailedError(tx_hash.to_0x_hex(), receipt)
        client = cls(w3, receipt["contractAddress"], sender)
        client.last_receipt = receipt
        return client

    def as_account(self, account: LocalAccount | bytes | str) -> Self:
        """The same contract, sending from another account."""
        return type(self)(self.w3, self.address, account)

    def _revert(self, exc: BaseException) -> ChainError:
        data = _revert_data(exc)
        if data:
            return decode_revert(data, (self.CONTRACT,))
        return ChainError(str(exc))

    def _call(self, fn: Any) -> Any:
        try:
            return fn.call()
        except (ContractLogicError, Web3RPCError) as exc:
            raise self._revert(exc) from exc

    def _transact(self, fn: Any, value: int = 0, timeout: float = 120.0) -> TxReceipt:
        if self.account is None:
            raise ChainError("this client has no account to send transactions from")
        sender = self.account.address
        params: dict[str, Any] = {"from": sender, "value": value, "chainId": self.chain_id}
        try:
            # Estimate in the block the transaction will land in: a call whose cost depends on the
            # block (SettlementAVS writes a new stake checkpoint per block) would otherwise be
            # estimated against the latest block and could run out of gas in the next one.
            gas = fn.estimate_gas(params, block_identifier="pending")
        except (ContractLogicError, Web3RPCError) as exc:
            raise self._revert(exc) from exc
        params["gas"] = gas + gas // 5 + 10_000  # headroom; gasUsed is what the receipt reports
        params["nonce"] = self.w3.eth.get_transaction_count(sender, "pending")
        tx = fn.build_transaction(params)
        signed = self.account.sign_transaction(tx)
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout)
        self.last_receipt = receipt
        if receipt["status"] != 1:
            raise TransactionFailedError(tx_hash.to_0x_hex(), receipt)
        return receipt


@dataclass(frozen=True)
class ClaimOutcome:
    """What one ``claim`` or ``claimBatch`` transaction did, read from its receipt's events.

    :ivar claimed: channel id -> its new claimed total (``Claimed``).
    :ivar paid: channel id -> wei this transaction paid on it (``Claimed``).
    :ivar skipped: channel id -> name of the error the batch skipped its voucher for (``ClaimSkipped``).
    :ivar credited: account -> wei credited to ``withdrawable`` because a push failed (``PaymentCredited``).
    """

    claimed: dict[int, int]
    paid: dict[int, int]
    skipped: dict[int, str]
    credited: dict[str, int]

    @property
    def amount(self) -> int:
        """Total wei this transaction paid (pushed or credited)."""
        return sum(self.paid.values())


@dataclass(frozen=True)
class ChannelState:
    """One channel as the contract's ``channel(id)`` returns it."""

    payer: str
    payee: str
    deposit: int
    claimed: int
    closes_at: int
    settled: bool

    @property
    def outstanding(self) -> int:
        """Wei still locked for this channel (zero once settled)."""
        return 0 if self.settled else self.deposit - self.claimed


class StreamChannelsClient(_Client):
    """``StreamChannels``: open, top up, claim (single and batch), close, finalise, release.

    :param w3: a connected Web3.
    :param address: the deployed contract.
    :param account: the local account that sends transactions (key or LocalAccount); optional for reads.
    """

    CONTRACT = "StreamChannels"

    # -- transactions ---------------------------------------------------------------------------

    def open(self, payee: str, challenge_period: int, deposit: int) -> int:
        """Opens a channel to ``payee`` with ``deposit`` wei; returns its id."""
        receipt = self._transact(
            self.contract.functions.open(to_checksum_address(payee), challenge_period), value=deposit
        )
        (event,) = self.contract.events.ChannelOpened().process_receipt(receipt)
        return int(event["args"]["channelId"])

    def top_up(self, channel_id: int, amount: int) -> TxReceipt:
        """Adds ``amount`` wei to a channel's deposit."""
        return self._transact(self.contract.functions.topUp(channel_id), value=amount)

    def claim(self, channel_id: int, cumulative_amount: int, signature: bytes) -> TxReceipt:
        """Claims a voucher; the payee receives ``cumulative_amount`` minus what was claimed."""
        return self._transact(self.contract.functions.claim(channel_id, cumulative_amount, signature))

    def claim_batch(self, vouchers: Sequence[tuple[int, int, bytes]]) -> TxReceipt:
        """Claims ``(channel_id, cumulative_amount, signature)`` vouchers in one transaction.

        Not atomic: a voucher the contract would refuse (channel settled or past its challenge period,
        bad signature, ...) is skipped with a ``ClaimSkipped`` event; read :meth:`claim_outcome` of the
        receipt for what was paid. Group vouchers by payee: consecutive channels with the same payee
        are paid in one transfer.
        """
        ids = [v[0] for v in vouchers]
        amounts = [v[1] for v in vouchers]
        sigs = [v[2] for v in vouchers]
        return self._transact(self.contract.functions.claimBatch(ids, amounts, sigs))

    def withdraw(self, to: str | None = None) -> TxReceipt:
        """Pulls this account's credit (payments whose push failed) to ``to`` (default: this account)."""
        assert self.account is not None or to is not None
        recipient = to if to is not None else self.account.address  # type: ignore[union-attr]
        return self._transact(self.contract.functions.withdraw(to_checksum_address(recipient)))

    def claim_outcome(self, receipt: TxReceipt) -> ClaimOutcome:
        """What a ``claim``/``claim_batch`` receipt paid, skipped and credited (only this contract's logs)."""
        claimed: dict[int, int] = {}
        paid: dict[int, int] = {}
        skipped: dict[int, str] = {}
        credited: dict[str, int] = {}
        names = {sel: name for sel, (name, _, _) in _error_table((self.CONTRACT,)).items()}
        ours = {"logs": [log for log in receipt["logs"] if to_checksum_address(log["address"]) == self.address]}
        events = self.contract.events
        for ev in events.Claimed().process_receipt(ours, errors=DISCARD):
            cid = int(ev["args"]["channelId"])
            claimed[cid] = int(ev["args"]["cumulativeAmount"])
            paid[cid] = paid.get(cid, 0) + int(ev["args"]["amount"])
        for ev in events.ClaimSkipped().process_receipt(ours, errors=DISCARD):
            reason = bytes(ev["args"]["reason"])
            skipped[int(ev["args"]["channelId"])] = names.get(reason, "0x" + reason.hex())
        for ev in events.PaymentCredited().process_receipt(ours, errors=DISCARD):
            account = to_checksum_address(ev["args"]["account"])
            credited[account] = credited.get(account, 0) + int(ev["args"]["amount"])
        return ClaimOutcome(claimed, paid, skipped, credited)

    def start_close(self, channel_id: int) -> TxReceipt:
        """Payer only: starts the challenge period."""
        return self._transact(self.contract.functions.startClose(channel_id))

    def finalize_close(self, channel_id: int) -> TxReceipt:
        """From ``closes_at`` on (when claims end): settles and refunds ``deposit - claimed`` to the payer."""
        return self._transact(self.contract.functions.finalizeClose(channel_id))

    def release(self, channel_id: int) -> TxReceipt:
        """Payee only: settles now and refunds the rest to the payer."""
        return self._transact(self.contract.functions.release(channel_id))

    # -- reads ----------------------------------------------------------------------------------

    def channel(self, channel_id: int) -> ChannelState:
        """The channel's current state."""
        payer, payee, deposit, claimed, closes_at, settled = self._call(self.contract.functions.channel(channel_id))
        return ChannelState(payer, payee, deposit, claimed, closes_at, settled)

    def voucher_digest(self, channel_id: int, cumulative_amount: int) -> bytes:
        """The contract's EIP-712 digest for a voucher."""
        return bytes(self._call(self.contract.functions.voucherDigest(channel_id, cumulative_amount)))

    def min_challenge_period(self) -> int:
        """``MIN_CHALLENGE_PERIOD`` in seconds."""
        return int(self._call(self.contract.functions.MIN_CHALLENGE_PERIOD()))

    def next_channel_id(self) -> int:
        """The id the next ``open`` returns."""
        return int(self._call(self.contract.functions.nextChannelId()))

    def withdrawable(self, account: str) -> int:
        """Wei credited to ``account`` because a payment push to it failed."""
        return int(self._call(self.contract.functions.withdrawable(to_checksum_address(account))))

    def balance(self) -> int:
        """Wei held by the contract."""
        return int(self.w3.eth.get_balance(self.address))


class SettlementAVSClient(_Client):
    """``SettlementAVS``: bond, exit, attest ended epochs' roots, slash equivocation."""

    CONTRACT = "SettlementAVS"

    @classmethod
    def deploy(  # type: ignore[override]
        cls, w3: Web3, account: LocalAccount | bytes | str, *, epoch_blocks: int, timeout: float = 120.0
    ) -> Self:
        """Deploys with ``epoch_blocks`` blocks per epoch (the operators' ``epoch_blocks``)."""
        return super().deploy(w3, account, epoch_blocks, timeout=timeout)

    def register(self, stake: int) -> TxReceipt:
        """Bonds ``stake`` wei for this client's account."""
        return self._transact(self.contract.functions.register(), value=stake)

    def request_exit(self) -> TxReceipt:
        """Starts the exit delay for this client's account."""
        return self._transact(self.contract.functions.requestExit())

    def withdraw_stake(self) -> TxReceipt:
        """Withdraws the bond after the exit delay."""
        return self._transact(self.contract.functions.withdrawStake())

    def attest(self, epoch: int, root: bytes, signatures: dict[str, bytes]) -> TxReceipt:
        """Finalises ``root`` for ``epoch`` with ``{operator: signature}`` (sorted here by address)."""
        ordered = sorted(
            ((to_checksum_address(op), sig) for op, sig in signatures.items()), key=lambda p: int(p[0], 16)
        )
        return self._transact(
            self.contract.functions.attest(epoch, root, [op for op, _ in ordered], [sig for _, sig in ordered])
        )

    def slash_equivocation(
        self, operator: str, epoch: int, root_a: bytes, sig_a: bytes, root_b: bytes, sig_b: bytes
    ) -> TxReceipt:
        """Slashes ``operator`` for signing two roots for ``epoch``; the reward goes to this account."""
        return self._transact(
            self.contract.functions.slashEquivocation(
                to_checksum_address(operator), epoch, root_a, sig_a, root_b, sig_b
            )
        )

    def finalized_root(self, epoch: int) -> bytes:
        """The epoch's final root (32 zero bytes until finalised)."""
        return bytes(self._call(self.contract.functions.finalizedRoot(epoch)))

    def stake_of(self, operator: str) -> int:
        """The operator's bond in wei."""
        return int(self._call(self.contract.functions.stakeOf(to_checksum_address(operator))))

    def epoch_blocks(self) -> int:
        """Blocks per epoch, as deployed."""
        return int(self._call(self.contract.functions.epochBlocks()))

    def total_active_stake(self) -> int:
        """Stake of active operators now."""
        return int(self._call(self.contract.functions.totalActiveStake()))

    def epoch_stake(self, epoch: int) -> int:
        """The quorum's denominator for an ended epoch (stake active just before it began)."""
        return int(self._call(self.contract.functions.epochStake(epoch)))

    def signing_stake(self, operator: str, epoch: int) -> int:
        """What ``operator``'s signature counts for an ended epoch now (zero if it has no say)."""
        return int(self._call(self.contract.functions.signingStake(to_checksum_address(operator), epoch)))

    def attestation_digest(self, epoch: int, root: bytes) -> bytes:
        """The EIP-712 digest operators sign for ``(epoch, root)``."""
        return bytes(self._call(self.contract.functions.attestationDigest(epoch, root)))
