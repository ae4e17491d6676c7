"""The live node: one process per mesh node, and the launcher that runs a mesh of them.

* :mod:`.wire` — length-prefixed, size-limited, schema-validated frames (msgspec);
* :mod:`.protocol` — :class:`~.protocol.NodeCore`, the whole behaviour of a node as a sans-IO state machine;
* :mod:`.learned` — :class:`~.learned.LearnedCore`, a node of kind ``learned`` played by an exported attacker policy;
* :mod:`.server` — the thin asyncio layer around it (``python -m runtime.node``);
* :mod:`.store` — sqlite (WAL, ``synchronous=FULL``) for channels and vouchers;
* :mod:`.config` — the node's configuration file;
* :mod:`.mesh` — ``python -m runtime.mesh``: anvil, contracts, node processes, the settlement service.

May import ``runtime.chain``, ``runtime.settlement`` and ``runtime.configfile``; neither of those imports it.
"""
