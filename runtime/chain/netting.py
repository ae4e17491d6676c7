"""Chain client for ``NetSettlement``: propose roots, claim a node's leaf, prove a root wrong.

``NetSettlementClient.deploy_bound`` deploys the contract next to an existing ``StreamChannels`` and
``SettlementAVS`` and binds it to both (``bindNetting`` and ``bindJudge``, which only their deployer
may call, once). Leaves, trees and digests are built by :mod:`runtime.settlement.netting`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from web3 import Web3
from web3.types import TxReceipt

from runtime.chain.client import (
    ChainError,
    SettlementAVSClient,
    StreamChannelsClient,
    _Client,
    _revert_data,
    decode_revert,
)
from runtime.settlement.netting import NodeLeaf

_CONTRACTS = ("NetSettlement", "StreamChannels", "SettlementAVS")


@dataclass(frozen=True)
class RootRecord:
    """An epoch's root on chain: the root (zero bytes if none), when it pays, whether it was voided."""

    root: bytes
    executable_at: int
    voided: bool


class NetSettlementClient(_Client):
    """``NetSettlement``: executable net-settlement roots with fraud proofs."""

    CONTRACT: ClassVar[str] = "NetSettlement"

    @classmethod
    def deploy_bound(
        cls,
        w3: Web3,
        deployer: LocalAccount | bytes | str,
        channels: StreamChannelsClient,
        avs: SettlementAVSClient,
        challenge_window: int,
    ) -> Self:
        """Deploys with a ``challenge_window`` (seconds) and binds it in ``channels`` and ``avs``;
        ``deployer`` must be the account that deployed both."""
        client = cls.deploy(w3, deployer, channels.address, avs.address, challenge_window)
        channels.as_account(deployer)._transact(channels.contract.functions.bindNetting(client.address))
        avs.as_account(deployer)._transact(avs.contract.functions.bindJudge(client.address))
        return client

    def _revert(self, exc: BaseException) -> ChainError:
        data = _revert_data(exc)
        if data:
            return decode_revert(data, _CONTRACTS)
        return ChainError(str(exc))

    # --- transactions -------------------------------------------------------------------------

    def propose_root(self, epoch: int, root: bytes, signatures: dict[str, bytes]) -> TxReceipt:
        """Records ``root`` for ``epoch`` with ``{operator: signature}`` (sorted here by address)."""
        ordered = sorted(((to_checksum_address(o), s) for o, s in signatures.items()), key=lambda p: int(p[0], 16))
        return self._transact(
            self.contract.functions.proposeRoot(epoch, root, [o for o, _ in ordered], [s for _, s in ordered])
        )

    def claim_net(self, epoch: int, leaf: NodeLeaf, proof: list[bytes]) -> TxReceipt:
        """Pays ``leaf.node`` its leaf of ``epoch``'s root (after the challenge window)."""
        return self._transact(
            self.contract.functions.claimNet(epoch, leaf.node, leaf.amount, leaf.entry_tuples(), proof)
        )

    def prove_unsupported_entry(
        self, epoch: int, leaf: NodeLeaf, proof: list[bytes], index: int, signers: list[str]
    ) -> TxReceipt:
        """Voids ``epoch``'s root: entry ``index`` of ``leaf`` has no payer signature behind it."""
        return self._transact(
            self.contract.functions.proveUnsupportedEntry(
                epoch, leaf.node, leaf.amount, leaf.entry_tuples(), proof, index, signers
            )
        )

    def prove_malformed_leaf(self, epoch: int, leaf: NodeLeaf, proof: list[bytes], signers: list[str]) -> TxReceipt:
        """Voids ``epoch``'s root: ``leaf`` is not the sum of its entries (or is malformed)."""
        return self._transact(
            self.contract.functions.proveMalformedLeaf(
                epoch, leaf.node, leaf.amount, leaf.entry_tuples(), proof, signers
            )
        )

    # --- views --------------------------------------------------------------------------------

    def root_of(self, epoch: int) -> RootRecord:
        """``epoch``'s root record."""
        root, executable_at, voided = self._call(self.contract.functions.rootOf(epoch))
        return RootRecord(bytes(root), int(executable_at), bool(voided))

    def signers_of(self, epoch: int) -> list[str]:
        """The signers recorded with ``epoch``'s latest proposal (from its ``RootProposed`` event)."""
        logs = self.contract.events.RootProposed.get_logs(from_block=0, argument_filters={"epoch": epoch})
        if not logs:
            raise ChainError(f"no root was proposed for epoch {epoch}")
        return [to_checksum_address(a) for a in logs[-1]["args"]["signers"]]

    def root_digest(self, epoch: int, root: bytes) -> bytes:
        """The digest operators sign for ``(epoch, root)``."""
        return bytes(self._call(self.contract.functions.rootDigest(epoch, root)))

    def leaf_hash(self, epoch: int, leaf: NodeLeaf) -> bytes:
        """The contract's hash of ``leaf`` (to cross-check the Python one)."""
        return bytes(self._call(self.contract.functions.leafHash(epoch, leaf.node, leaf.amount, leaf.entry_tuples())))

    def roots_voided(self) -> int:
        """How many roots were voided."""
        return int(self._call(self.contract.functions.rootsVoided()))

    def challenge_window(self) -> int:
        """Seconds a root can be challenged."""
        return int(self._call(self.contract.functions.challengeWindow()))
