"""The chain: the web3.py client of the contracts (:mod:`.client`), a local anvil (:mod:`.anvil`), and
EIP-712 voucher and attestation signing and verification with coincurve (:mod:`.vouchers`).

Imports nothing from ``runtime.node`` or ``runtime.settlement``: both build on it.
"""
