"""Trust gossip: what neighbours report of each other, and the rule that weighs it against slander.

The origin's loop ends with "share insights with network"; this is that step, for the environment
(``envs.gossip``) and the live node alike (one rule, one module, numpy only).

**Reports.** Every ``period`` steps each node sends each neighbour a summary of its *direct*
custody evidence about its own neighbours (:func:`direct_reports`): per subject, the custody rate
(delivered = 1, lost while the subject held the piece = 0; ``agents.memory``) and the number of
samples behind it, capped at :data:`MAX_REPORT_COUNT`. One report per neighbour per period, at most
``SLOTS`` subjects each: what a node hears is bounded per peer and per period. A report about a
node the receiver does not have as a neighbour is dropped unread (it costs nothing).

**The rule** (:func:`aggregate`), for a receiver ``w``, a subject ``x`` among its neighbours and the
reporters ``u`` (neighbours of both ``w`` and ``x``, the triangles of the graph):

1. *Trust in a reporter*: ``w``'s own custody rate of ``u`` (EigenTrust: trust a reporter as much as
   you trust it to forward) x ``u``'s ``credibility`` (step 3).
2. *A reporter's vote*: its reported rate shrunk towards the optimistic prior 1.0 by its confidence
   ``c = min(count, FULL_VOICE_COUNT) / FULL_VOICE_COUNT``: ``c x rate + (1 - c)``. A reporter that
   has never handed ``x`` a piece votes 1.0 (no evidence of a drop); the confidence saturates at a
   few samples, because a count is only the reporter's claim: claiming fifty buys a liar nothing.
3. *Network view*: ``net_rate`` is the trust-weighted *median* of the votes of every common
   neighbour, silent ones included, so an accusation needs a trusted majority of them, not of those
   that speak (a tie goes to the higher rate); ``net_weight`` is the evidence behind it, the sum of
   ``trust x c``; ``net_reporters`` counts the reporters whose ``trust x c`` is at least
   :data:`MIN_WEIGHT`. With fewer than :data:`MIN_REPORTERS` of them the view is empty (rate 1.0,
   weight 0): a lone voice, liar or not, moves nothing. A period's reports replace the last view.
4. *Coherence test of the reporter* (CONFIDANT's deviation test; the origin's coherence check applied
   to reports): each report with a count deviates from ``w``'s own custody rate of the subject where
   ``w`` has at least :data:`MIN_OWN_EVIDENCE` samples. Only one's own evidence tests a reporter,
   never the reports of others: a local majority of liars cannot discredit the honest minority. The
   reporter's credibility (an EMA, rate :data:`ALPHA_CREDIBILITY`, starting at
   ``agents.memory.INITIAL_CREDIBILITY``) moves towards ``max(0, 1 - 2 x mean deviation)``: a node
   that calls honest neighbours droppers, or praises droppers, loses its voice.

**Rating** (:func:`rating`): a node's verdict on a neighbour blends its own custody rate, weighted
by ``PRIOR_WEIGHT + min(own samples, OWN_WEIGHT_CAP)`` (the custody rate starts at the optimistic
1.0), with the network view, weighted by ``min(net_weight, NET_WEIGHT_CAP)``. Seasoned own evidence
outweighs all reporters together, so slander can sway a verdict on a node one has never used (where
the honest reporters outvote it) but cannot overturn one's own experience. Below
:data:`RATING_THRESHOLD` the neighbour is *rated a cheat* (the metrics ``detection_steps`` and
``false_accusations`` of ``envs.core`` count these verdicts).

Gossipsub v1.1 keeps scores local because shared scores invite slander; this rule shares them but
lets only reporters whose reports survive one's own evidence move one's view.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from agents.memory import NeighbourMemory

#: Largest sample count a report may claim (a liar claiming more is capped, not believed more).
MAX_REPORT_COUNT = 50.0
#: Report count at which a report has its full confidence (claiming more buys a liar nothing).
FULL_VOICE_COUNT = 3.0
#: Own custody samples of a subject before reports about it test their reporter.
MIN_OWN_EVIDENCE = 3.0
#: EMA rate of a reporter's credibility.
ALPHA_CREDIBILITY = 0.3
#: Cap of the own-evidence weight in :func:`rating`.
OWN_WEIGHT_CAP = 10.0
#: Weight of the optimistic prior (rate 1.0, "trust until shown otherwise") in :func:`rating`.
PRIOR_WEIGHT = 0.25
#: Cap of the network view's weight in :func:`rating`.
NET_WEIGHT_CAP = 5.0
#: A reporter counts in ``net_reporters`` when its trust x confidence is at least this much.
MIN_WEIGHT = 0.05
#: Reporters (weighing at least MIN_WEIGHT) a network view needs before it counts at all.
MIN_REPORTERS = 2
#: Rated below this, a neighbour is taken for a cheat.
RATING_THRESHOLD = 0.5


@dataclass
class Reports:
    """One period's reports as seen by their receivers, one entry per (receiver, subject, reporter).

    ``rows``: the receiver's memory row; ``subject``: the receiver's slot of the subject;
    ``reporter``: the receiver's slot of the reporter; ``rate`` and ``count``: what the reporter says.
    """

    rows: np.ndarray
    subject: np.ndarray
    reporter: np.ndarray
    rate: np.ndarray
    count: np.ndarray


def direct_reports(memory: NeighbourMemory) -> tuple[np.ndarray, np.ndarray]:
    """``(rate, count)``, each ``(n_nodes, slots)``: every node's truthful report on each neighbour slot."""
    return memory.custody.copy(), np.minimum(memory.custody_count, MAX_REPORT_COUNT)


def aggregate(
    memory: NeighbourMemory, reports: Reports, receivers: np.ndarray, view: Callable[..., tuple] | None = None
) -> None:
    """Replace the network view of every slot of ``receivers`` (memory rows), then test the reporters.

    Reports whose receiver is not in ``receivers`` must not be passed. Rates are clipped to [0, 1]
    and counts to [0, :data:`MAX_REPORT_COUNT`] (a peer's numbers are not trusted to be in range).

    :param view: :func:`network_view` or a function computing exactly the same (the environment's
        compiled kernel, ``envs.kernels.compiled_network_view``).
    """
    w, k, i = reports.rows, reports.subject, reports.reporter
    rate = np.clip(np.nan_to_num(reports.rate, nan=0.0), 0.0, 1.0)
    count = np.clip(np.nan_to_num(reports.count, nan=0.0), 0.0, MAX_REPORT_COUNT)
    slots = memory.slots
    trust = memory.custody[w, i] * memory.credibility[w, i]
    confidence = np.minimum(count, FULL_VOICE_COUNT) / FULL_VOICE_COUNT
    vote = confidence * rate + (1.0 - confidence)  # the report shrunk towards the optimistic prior
    evidence = trust * confidence
    shape = (memory.n_nodes, slots)
    net_rate, net_weight, voices = np.ones(shape), np.zeros(shape), np.zeros(shape)
    if w.size:
        cells, median, total, heard = (view or network_view)(w.astype(np.int64) * slots + k, vote, trust, evidence)
        # One voice alone moves nothing: a lone liar cannot accuse (or clear) anyone.
        counted = heard >= MIN_REPORTERS
        net_rate.reshape(-1)[cells] = np.where(counted, median, 1.0)
        net_weight.reshape(-1)[cells] = np.where(counted, total, 0.0)
        voices.reshape(-1)[cells] = heard
        spoke = count > 0
        _test_reporters(memory, w[spoke], k[spoke], i[spoke], rate[spoke])
    r = receivers
    memory.net_rate[r], memory.net_weight[r], memory.net_reporters[r] = net_rate[r], net_weight[r], voices[r]


def network_view(
    cell: np.ndarray, vote: np.ndarray, trust: np.ndarray, evidence: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per distinct ``cell`` (ascending): the cell, the ``trust``-weighted median of the votes, the
    summed ``evidence`` and the number of reports whose evidence is at least :data:`MIN_WEIGHT`."""
    cells, median, group = _weighted_median(cell, vote, trust)
    total = np.bincount(group, weights=evidence, minlength=cells.size)
    heard = np.bincount(group, weights=evidence >= MIN_WEIGHT, minlength=cells.size)
    return cells, median, total, heard


def _weighted_median(cell: np.ndarray, value: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per distinct ``cell`` (ascending): the cell and the weighted median value (1.0 where nothing
    weighs); and each entry's index into those cells."""
    order = np.lexsort((value, cell))
    c, v, wt = cell[order], value[order], weight[order]
    first = np.empty(c.size, dtype=bool)
    first[0] = True
    np.not_equal(c[1:], c[:-1], out=first[1:])
    start = np.flatnonzero(first)
    group_sorted = np.cumsum(first) - 1
    total = np.bincount(group_sorted, weights=wt)
    cum = np.cumsum(wt)
    within = cum - (cum[start] - wt[start])[group_sorted]
    # ``within`` only grows, so the median is the first entry strictly past half the weight (a tie
    # between accusers and the rest resolves to the higher value: benefit of the doubt).
    half = 0.5 * total[group_sorted]
    below = np.bincount(group_sorted, weights=within <= half, minlength=start.size).astype(np.int64)
    median = np.where(total > 0, v[np.minimum(start + below, c.size - 1)], 1.0)
    group = np.empty_like(group_sorted)
    group[order] = group_sorted
    return c[start], median, group


def _test_reporters(memory: NeighbourMemory, w: np.ndarray, k: np.ndarray, i: np.ndarray, rate: np.ndarray) -> None:
    """Move each reporter's credibility towards ``1 - 2 x`` its mean deviation from the receiver's own
    custody rate, over the subjects of which the receiver has :data:`MIN_OWN_EVIDENCE` samples."""
    tested = memory.custody_count[w, k] >= MIN_OWN_EVIDENCE
    if not tested.any():
        return
    deviation = np.abs(rate - memory.custody[w, k])[tested]
    cell = w[tested].astype(np.int64) * memory.slots + i[tested]
    size = memory.n_nodes * memory.slots
    n = np.bincount(cell, minlength=size)
    cells = np.flatnonzero(n)
    mean_dev = np.bincount(cell, weights=deviation, minlength=size)[cells] / n[cells]
    sample = np.maximum(0.0, 1.0 - 2.0 * mean_dev)
    memory._fold(memory.credibility, cells // memory.slots, cells % memory.slots, sample, ALPHA_CREDIBILITY)


def rating(memory: NeighbourMemory, rows: np.ndarray, cols: np.ndarray | None = None) -> np.ndarray:
    """A node's verdict on neighbour slots: own custody rate blended with the network view.

    With ``cols``: the ratings of the cells ``(rows, cols)``; without: ``(len(rows), slots)``, every
    slot of memory ``rows``.
    """
    at = rows if cols is None else (rows, cols)
    own = PRIOR_WEIGHT + np.minimum(memory.custody_count[at], OWN_WEIGHT_CAP)
    net = np.minimum(memory.net_weight[at], NET_WEIGHT_CAP)
    return (own * memory.custody[at] + net * memory.net_rate[at]) / (own + net)
