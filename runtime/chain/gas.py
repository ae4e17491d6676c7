"""Where a run's gas went: every transaction of a block range, grouped by what it did.

:func:`gas_breakdown` reads each transaction and its receipt, names the called function from the
contracts' ABIs (``StreamChannels``, ``SettlementAVS``, ``NetSettlement``) and adds its gas to one
category of :data:`CATEGORIES`. The mesh launcher reports the result as ``gas_breakdown``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from eth_utils import function_signature_to_4byte_selector
from web3 import Web3

from runtime.chain.client import load_artifact

#: function name -> category (names are unique across the three contracts where it matters)
_CATEGORY_OF = {
    "open": "open_deposit",
    "topUp": "open_deposit",
    "claim": "claims",
    "claimBatch": "claims",
    "claimNet": "net_claims",
    "proposeRoot": "net_roots",
    "proveUnsupportedEntry": "fraud_proofs",
    "proveMalformedLeaf": "fraud_proofs",
    "startClose": "close_finalize",
    "finalizeClose": "close_finalize",
    "release": "close_finalize",
    "withdraw": "close_finalize",
    "attest": "flow_attestations",
    "slashEquivocation": "flow_attestations",
    "register": "operator_bonds",
    "bindNetting": "deploy",
    "bindJudge": "deploy",
}

#: the categories reported, in order
CATEGORIES = (
    "deploy",
    "funding",
    "operator_bonds",
    "open_deposit",
    "claims",
    "net_roots",
    "net_claims",
    "fraud_proofs",
    "flow_attestations",
    "close_finalize",
    "other",
)

#: categories that move money to payees (what ``settlement_gas_used`` counts)
SETTLEMENT_CATEGORIES = ("claims", "net_roots", "net_claims", "fraud_proofs")


def _selectors() -> dict[str, str]:
    out: dict[str, str] = {}
    for name in ("StreamChannels", "SettlementAVS", "NetSettlement"):
        for item in load_artifact(name).abi:
            if item.get("type") != "function":
                continue
            sig = f"{item['name']}({','.join(_type(p) for p in item['inputs'])})"
            out["0x" + function_signature_to_4byte_selector(sig).hex()] = item["name"]
    return out


def _type(param: Mapping[str, Any]) -> str:
    t = param["type"]
    if t.startswith("tuple"):
        return "(" + ",".join(_type(c) for c in param["components"]) + ")" + t[len("tuple") :]
    return t


def category_of(tx: Mapping[str, Any], selectors: Mapping[str, str]) -> str:
    """The category of one transaction (``tx`` as web3 returns it)."""
    if tx.get("to") is None:
        return "deploy"
    raw = tx["input"]
    data = raw.to_0x_hex() if hasattr(raw, "to_0x_hex") else str(raw)
    if data in ("0x", ""):
        return "funding"
    return _CATEGORY_OF.get(selectors.get(data[:10], ""), "other")


def gas_breakdown(w3: Web3, blocks: Iterable[int]) -> dict[str, dict[str, int]]:
    """``{category: {"gas": total, "txs": count}}`` over every transaction of ``blocks``."""
    selectors = _selectors()
    out = {c: {"gas": 0, "txs": 0} for c in CATEGORIES}
    for n in blocks:
        for h in w3.eth.get_block(n)["transactions"]:
            cat = category_of(w3.eth.get_transaction(h), selectors)
            out[cat]["gas"] += int(w3.eth.get_transaction_receipt(h)["gasUsed"])
            out[cat]["txs"] += 1
    return out
