"""Custody and trust gossip in the core: who takes a loss, what neighbours tell each other, and the
verdicts the metrics count. The rule itself is ``agents.gossip`` (shared with the live node).

* **Custody.** When a piece is lost, the node that held it last (``p_node``: the last node that
  accepted it) takes the loss: the sender that handed it to that node records it as the
  neighbour's own loss, every sender before records a loss *beyond* its neighbour (that neighbour
  showed the next hop's acceptance). A refused hand-over is the refusing neighbour's own loss for
  the sender, and the sender's own loss for the nodes before it. Ballot stuffers of a ``clique``
  (``adversaries.ballot_stuffer.clique``) take the blame off one another: the one holding a lost
  piece shows a false acceptance signed by a fellow stuffer among its neighbours, so its upstream
  records a loss beyond it (honest nodes cannot be framed: their signatures cannot be forged).
* **Gossip.** Every ``gossip.period`` steps each node reports to each neighbour its custody rate and
  sample count for each of its own neighbours (``agents.gossip.direct_reports``); receivers keep the
  reports on their own neighbours that come from common neighbours (the triangles of the graph, fixed
  per episode) and aggregate them (``agents.gossip.aggregate``). Liars: a slanderer reports every
  honest neighbour at rate 0 with the largest count; a ballot stuffer reports every dishonest
  neighbour at rate 1; a learned attacker says what its ``gossip`` action chooses.
* **Verdicts** (every gossip period, also with gossip off): a node rates a neighbour a cheat when
  ``agents.gossip.rating`` is below ``RATING_THRESHOLD``. ``detection_steps``: per cheat that drops
  pieces, the first checked step at which most of its present honest neighbours rate it a cheat
  (steps so far while it is not found out), averaged over the mesh's droppers; ``detected_share``:
  the share found out; ``false_accusations``: the share of honest nodes that most of their present
  honest neighbours rate a cheat, averaged over the checks.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from agents.attacker import GOSSIP_PRAISE, GOSSIP_SLANDER
from agents.gossip import (
    ALPHA_CREDIBILITY,
    FULL_VOICE_COUNT,
    MAX_REPORT_COUNT,
    MIN_OWN_EVIDENCE,
    MIN_REPORTERS,
    MIN_WEIGHT,
    RATING_THRESHOLD,
    Reports,
    aggregate,
    direct_reports,
    rating,
)
from envs import kernels
from envs.kernels import compiled_network_view

#: The rule's bounds as the compiled round takes them (``envs.kernels._gossip_round_py``).
_ROUND_LIMITS = (
    MAX_REPORT_COUNT,
    FULL_VOICE_COUNT,
    MIN_WEIGHT,
    float(MIN_REPORTERS),
    MIN_OWN_EVIDENCE,
    kernels.fold_rate(ALPHA_CREDIBILITY),
)


class TrustGossip:
    """Mixin of :class:`envs.core.MeshCore`: custody attribution, gossip rounds and trust verdicts.

    Needs the core's ``kind`` codes passed to :meth:`_assemble_gossip` (the core owns them).
    """

    def _assemble_gossip(self, honest: int, droppers: tuple[int, ...], slanderer: int, stuffer: int) -> None:
        meshes, n = self.meshes, self.n_nodes
        self.gossip_period = np.array([m.scenario.gossip.period for m in meshes], dtype=np.int64)
        self.gossip_on = np.array([m.scenario.gossip.enabled for m in meshes], dtype=bool)
        kind = self.kind
        self._honest_node = kind == honest
        self._slanderer = kind == slanderer
        self._stuffer = kind == stuffer
        # Triangles w -(i)- u -(j)- x, w -(k)- x: u reports to w on x. Static over the episode.
        links = self.link_mask
        nbr = self.nbr
        slots = nbr.shape[1]
        w, i, k = np.nonzero(links[:, :, None] & links[:, None, :] & ~np.eye(slots, dtype=bool)[None])
        gossiping = self.gossip_on[self.node_mesh[w]]
        w, i, k = w[gossiping], i[gossiping], k[gossiping]
        u, x = nbr[w, i], nbr[w, k]
        hit = (nbr[u] == x[:, None]) & links[u]
        has = hit.any(axis=1)
        self._tri = (w[has], i[has], k[has], u[has], hit[has].argmax(axis=1))
        w, i, k, u, j = self._tri
        self._tri_flat = (w * slots + i, w * slots + k, u * slots + j)  # flat cells of mask-like arrays
        self._tri_by_cell = np.argsort(w.astype(np.int64) * slots + k, kind="stable")
        self._tri_stack = np.stack(self._tri).astype(np.int64)  # the compiled round's layout
        # Clique ballot stuffers: the fellow stuffer each shifts its blame onto (-1: none).
        clique = np.array([bool(m.scenario.adversary("ballot_stuffer").clique) for m in meshes])
        shifter = self._stuffer & clique[self.node_mesh]
        fellow = links & self._stuffer[nbr] & shifter[:, None]
        self.blame_ally = np.where(fellow.any(axis=1), nbr[np.arange(n), fellow.argmax(axis=1)], -1)
        self.has_clique = bool((self.blame_ally >= 0).any())
        # Verdict pairs: honest judges of droppers (detection) and of honest nodes (false accusations).
        dropper = np.isin(kind, droppers)
        judge = links & self._honest_node[:, None]
        self._cheat_pairs = np.nonzero(judge & dropper[nbr])
        self._honest_pairs = np.nonzero(judge & self._honest_node[nbr])
        self._dropper = dropper
        self.detected_at = np.full(n, -1, dtype=np.int64)
        B = len(meshes)
        self._accusation_sum = np.zeros(B)
        self._accusation_checks = np.zeros(B)
        self.gossip_choice = np.zeros(n, dtype=np.int64)  # learned nodes' gossip action (envs.learned)

    # ------------------------------------------------------------------ custody

    def _custody_own(self, pids: np.ndarray, rows: np.ndarray, cols: np.ndarray, refused: bool) -> np.ndarray:
        """Per path entry ``(rows, cols)`` of lost ``pids``: the receiver held the piece last (its own loss)."""
        holder = self.p_node[pids]
        if self.has_clique:
            ally = self.blame_ally[holder]
            holder = np.where(ally >= 0, ally, holder)
        own = self.nbr[rows, cols] == np.repeat(holder, self.p_hops[pids])
        if refused:
            own[np.cumsum(self.p_hops[pids]) - 1] = True  # the refusing neighbour, for its sender
        return own

    # ------------------------------------------------------------------ gossip and verdicts

    def _trust_round(self) -> None:
        """At a gossip step of some mesh: exchange reports, then check the verdicts."""
        due = self.t % self.gossip_period == 0
        if not due.any():
            return
        if self.gossip_on.any() and self._tri[0].size:
            self._gossip(due)
        self._verdicts(due)

    def _gossip(self, due: np.ndarray) -> None:
        if kernels.ENABLED and kernels.gossip_round_kernel is not None:
            self._gossip_compiled(due)
            return
        w, i, k, _, _ = self._tri
        wi, wk, uj = self._tri_flat
        mask = self.mask.reshape(-1)
        live = due[self.node_mesh[w]] & mask[wi] & mask[wk] & mask[uj]
        rate, count = direct_reports(self.memory)
        self._lies(rate, count)
        receivers = np.flatnonzero(due[self.node_mesh] & self.gossip_on[self.node_mesh])
        uj = uj[live]
        reports = Reports(w[live], k[live], i[live], rate.reshape(-1)[uj], count.reshape(-1)[uj])
        # The reports' stable order by (receiver, subject) cell, from the episode's fixed one.
        by_cell = self._tri_by_cell
        position = np.cumsum(live) - 1
        order = position[by_cell[live[by_cell]]]
        view = partial(compiled_network_view, order=order)
        aggregate(self.memory, reports, receivers, view=view)

    def _gossip_compiled(self, due: np.ndarray) -> None:
        """:meth:`_gossip` in one compiled pass (``envs.kernels.gossip_round_kernel``), the same values to the bit."""
        m = self.memory
        arrays = (m.custody, m.custody_count, m.credibility, m.net_rate, m.net_weight, m.net_reporters)
        if not all(a.flags.c_contiguous and a.dtype == np.float64 for a in arrays):
            raise RuntimeError("the compiled gossip round needs C-contiguous float64 memory arrays")
        learned = self.learned if self.has_learned else np.zeros(self.n_nodes, dtype=bool)
        kernels.gossip_round_kernel(
            self._tri_stack,
            self._tri_by_cell,
            due[self.node_mesh] & self.gossip_on[self.node_mesh],
            self.mask.reshape(-1),
            self.nbr.reshape(-1),
            tuple(a.reshape(-1) for a in arrays),
            (self._slanderer, self._stuffer, self._honest_node, learned),
            np.concatenate([self.gossip_choice, [GOSSIP_PRAISE, GOSSIP_SLANDER]]).astype(np.int64),
            _ROUND_LIMITS,
        )

    def _lies(self, rate: np.ndarray, count: np.ndarray) -> None:
        """Overwrite the reports of the nodes that lie in gossip (in place)."""
        honest_subject = self._honest_node[self.nbr] & self.link_mask
        dishonest_subject = ~self._honest_node[self.nbr] & self.link_mask
        slander = self._slanderer[:, None] & honest_subject
        praise = self._stuffer[:, None] & dishonest_subject
        if self.has_learned:
            learned = self.learned
            choice = self.gossip_choice
            allies = learned[self.nbr] & self.link_mask
            praise |= (learned & (choice >= GOSSIP_PRAISE))[:, None] & allies
            slander |= (learned & (choice == GOSSIP_SLANDER))[:, None] & honest_subject
        rate[slander], count[slander] = 0.0, MAX_REPORT_COUNT
        rate[praise], count[praise] = 1.0, MAX_REPORT_COUNT

    def _low_votes(self, pairs: tuple[np.ndarray, np.ndarray], due: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per subject node: how many of the judges in ``pairs`` (present links of due meshes) rate it a
        cheat, and how many judge it."""
        w, k = pairs
        keep = due[self.node_mesh[w]] & self.mask[w, k]
        w, k = w[keep], k[keep]
        x = self.nbr[w, k]
        low = rating(self.memory, w, k) < RATING_THRESHOLD
        return np.bincount(x, weights=low, minlength=self.n_nodes), np.bincount(x, minlength=self.n_nodes)

    def _verdicts(self, due: np.ndarray) -> None:
        if self._cheat_pairs[0].size:
            votes, voters = self._low_votes(self._cheat_pairs, due)
            found = (2 * votes > voters) & (voters > 0) & self.present & (self.detected_at < 0)
            self.detected_at[found] = self.t
        if self._honest_pairs[0].size:
            votes, voters = self._low_votes(self._honest_pairs, due)
            judged = voters > 0
            accused = (2 * votes > voters) & judged
            B = len(self.meshes)
            judged_n = np.bincount(self.node_mesh[judged], minlength=B)
            accused_n = np.bincount(self.node_mesh[accused], minlength=B)
            checked = due & (judged_n > 0)
            self._accusation_sum[checked] += accused_n[checked] / judged_n[checked]
            self._accusation_checks[checked] += 1

    def trust_metrics(self, b: int) -> dict[str, float]:
        """``detection_steps``, ``detected_share`` and ``false_accusations`` of mesh ``b`` so far."""
        nodes = (self.node_mesh == b) & self._dropper
        found = self.detected_at[nodes]
        steps = np.where(found >= 0, found, self.t)
        checks = self._accusation_checks[b]
        return {
            "detection_steps": float(steps.mean()) if steps.size else 0.0,
            "detected_share": float((found >= 0).mean()) if found.size else 1.0,
            "false_accusations": float(self._accusation_sum[b] / checks) if checks else 0.0,
        }
