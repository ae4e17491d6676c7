"""The settlement service, in the role of an EigenLayer AVS.

* :mod:`.roots` — net flows per pair of nodes and their Merkle root (OpenZeppelin's hashing);
* :mod:`.operator` — one operator: reads claims from chain, signs each epoch's root, serves proofs;
* :mod:`.aggregator` — collects attestations, finalises with a 2/3 stake quorum, slashes equivocation;
* :mod:`.flow_check` — the node-side check of every finalised root against its own reading of chain;
* :mod:`.service` — starts an aggregator and K operators as processes (used by ``runtime.mesh``);
* :mod:`.cli` and :mod:`.http_json` — the processes' shared command-line opening and JSON over HTTP
  (routing for :class:`runtime.http_server.BoundedHttpServer`; the handlers stay thin).

May import ``runtime.chain`` and ``runtime.configfile``; never ``runtime.node``.
"""
