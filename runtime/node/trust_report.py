"""The mesh report's trust verdicts (issue 22): who the honest nodes rate a cheat, and since when.

Every time the launcher reads the nodes' stats (about twice a second), :class:`TrustTracker` counts,
per node, how many of its honest neighbours rate it below ``agents.gossip.RATING_THRESHOLD`` (each
node's ``peers[*].rating``: its own custody rate blended with the network view, ``agents.gossip.rating``).

* ``detection_s``: per dishonest kind that loses pieces, the mean over its nodes of the seconds from
  the start of the streams until most of the node's honest neighbours rate it a cheat (a node never
  found out counts the run's duration, and ``detected_share`` says how many were); the environment's
  ``detection_steps``, measured on the wall clock.
* ``false_accusations``: the share of honest nodes that most of their honest neighbours rate a cheat,
  averaged over the checks (``honest_accused``: the honest nodes accused at any check).
* ``ratings_sent``/``ratings_accepted``/``ratings_rejected``: rating frames over all nodes.
"""

from __future__ import annotations

from agents.gossip import RATING_THRESHOLD

__all__ = ["LOSING_KINDS", "TrustTracker"]

#: Kinds whose detection is measured: every kind that loses pieces (envs.core's detection kinds).
LOSING_KINDS = ("blackhole", "forger", "grey_hole", "on_off", "selective", "ballot_stuffer", "blame_shifter", "learned")


class TrustTracker:
    """Verdicts of the honest nodes over a run (see the module docstring).

    :param ids: node ids; :param kinds: their kinds; :param links: ``(a, b, latency)`` of the plan.
    """

    def __init__(self, ids: list[str], kinds: list[str], links: list) -> None:
        self.kind = dict(zip(ids, kinds, strict=True))
        self.judges: dict[str, list[str]] = {n: [] for n in ids}  # node -> its honest neighbours
        for a, b, _ in links:
            if self.kind[a] == "honest":
                self.judges[b].append(a)
            if self.kind[b] == "honest":
                self.judges[a].append(b)
        self.detected_at: dict[str, float] = {}
        self.accused_sum = 0.0
        self.checks = 0
        self.accused_ever: set[str] = set()

    def _accused(self, snaps: dict[str, dict], node: str) -> bool:
        judges = [j for j in self.judges[node] if node in snaps.get(j, {}).get("peers", {})]
        if not judges:
            return False
        low = sum(snaps[j]["peers"][node].get("rating", 1.0) < RATING_THRESHOLD for j in judges)
        return low * 2 > len(judges)

    def check(self, snaps: dict[str, dict], elapsed: float) -> None:
        """One reading of the nodes' stats, ``elapsed`` seconds after the streams started."""
        honest = [n for n, k in self.kind.items() if k == "honest"]
        for n, k in self.kind.items():
            if k in LOSING_KINDS and n not in self.detected_at and self._accused(snaps, n):
                self.detected_at[n] = round(elapsed, 2)
        accused = [n for n in honest if self._accused(snaps, n)]
        self.accused_ever.update(accused)
        self.accused_sum += len(accused) / max(1, len(honest))
        self.checks += 1

    def report(self, snaps: dict[str, dict], duration: float) -> dict:
        """The report's trust fields."""
        by_kind: dict[str, list[float]] = {}
        found: dict[str, list[bool]] = {}
        for n, k in self.kind.items():
            if k in LOSING_KINDS:
                by_kind.setdefault(k, []).append(self.detected_at.get(n, duration))
                found.setdefault(k, []).append(n in self.detected_at)
        stats = [s.get("stats", {}) for s in snaps.values()]
        return {
            "detection_s": {k: round(sum(v) / len(v), 2) for k, v in sorted(by_kind.items())},
            "detected_share": {k: sum(v) / len(v) for k, v in sorted(found.items())},
            "detected_at_s": dict(sorted(self.detected_at.items())),
            "false_accusations": self.accused_sum / max(1, self.checks),
            "honest_accused": sorted(self.accused_ever),
            "ratings_sent": int(sum(s.get("ratings_sent", 0) for s in stats)),
            "ratings_accepted": int(sum(s.get("ratings_accepted", 0) for s in stats)),
            "ratings_rejected": int(sum(s.get("ratings_rejected", 0) for s in stats)),
            "losses_own": int(sum(s.get("losses_own", 0) for s in stats)),
            "losses_beyond": int(sum(s.get("losses_beyond", 0) for s in stats)),
            "forged_custody_rejected": int(sum(s.get("forged_custody", 0) for s in stats)),
        }
