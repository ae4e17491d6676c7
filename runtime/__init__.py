"""The live side of OpenStreaming, in three rooms that import one way: ``chain <- settlement <- node``.

* :mod:`runtime.chain` — the chain client (web3.py), anvil, voucher signing and verification. Uses
  neither of the others.
* :mod:`runtime.settlement` — the settlement service in the role of an EigenLayer AVS: net flows and
  Merkle roots, operators, the aggregator/challenger, the node-side root check. May use ``chain``.
* :mod:`runtime.node` — the live node: wire protocol, sans-IO protocol core, asyncio I/O, sqlite
  store, config, and the mesh launcher. May use ``chain`` and ``settlement`` (a node checks every
  finalised root; the mesh runs the settlement service beside its nodes).

:mod:`runtime.configfile` (strict YAML/JSON configs, keys from env or file) is shared by all three
and imports none of them. :mod:`runtime.dashboard` (the live web page, its server and frame format)
imports none of them either, nor the environment: the mesh feeds it (``runtime.node.dashboard_feed``)
and so does an environment episode (``eval.watch``).

The commands people type keep their short names through thin entry-point modules:
``python -m runtime.node`` (the package's ``__main__``), ``python -m runtime.mesh``,
``python -m runtime.operator`` and ``python -m runtime.aggregator``.
"""
