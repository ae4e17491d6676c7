"""Memory: what a node knows about each of its neighbours, learned from outcomes.

One :class:`NeighbourMemory` holds the statistics of ``n_nodes`` nodes x ``slots`` neighbour
slots as numpy arrays, so the environment updates every node of a batch of meshes at once and
the live node uses the same class with ``n_nodes=1``.

Update rules (all exponential moving averages, EMA, with rate ``alpha``):

* ``observed_bw``: each transfer to the neighbour yields a throughput sample; EMA with
  ``alpha_bw``. Before the first sample it equals the neighbour's claim (no evidence of a lie).
* ``success``: each resolved piece sent through the neighbour yields 1 (delivered) or 0
  (dropped, expired, or never acknowledged before its deadline); EMA with ``alpha_success``,
  starting optimistic at 1.0 like the origin's "trust until shown otherwise".
* ``cooperation``: each hand-over yields 1 if the neighbour accepted the piece and 0 if it
  refused it; EMA with ``alpha_coop``, starting at 1.0.
* ``delay``: the time a piece waited in the neighbour's queue before it forwarded it,
  reported back with the hop acknowledgement; EMA with ``alpha_delay``, starting at 0.
* counts of samples, so a policy can tell a fresh estimate from a seasoned one.

Custody (who held a lost piece last; ``agents.gossip`` and issue "Share what you learn"):

* ``custody``: the same outcomes as ``success`` except that a loss counts only when the neighbour
  itself held the piece last (it could show no downstream acceptance): 1 delivered, 0 lost while it
  held it; a loss *beyond* it (it showed the next hop's signed acceptance) adds no sample. EMA with
  ``alpha_success``, starting at 1.0. ``custody_count`` counts its samples; ``own_losses`` and
  ``beyond_losses`` count the two kinds of loss. ``success`` stays end to end.
* What the network says of the neighbour (written by ``agents.gossip.aggregate``, read by
  ``agents.features``): ``net_rate`` (the reporters' custody rates, weighted), ``net_weight`` (the sum
  of their weights), ``net_reporters`` (how many weighed in) and ``credibility`` (how far the
  neighbour's own reports agreed with this node's direct evidence; 0..1, starting at
  ``agents.gossip.INITIAL_CREDIBILITY``).

What the memory can tell about *change* (a neighbour that turns, or attacks in bursts):

* ``success_recent``: the same outcomes as ``success`` on a fast EMA (``alpha_recent``, about
  the last two or three outcomes), so a drop shows beside the slow estimate.
* ``since_loss``: outcomes since the last loss through the neighbour (a loss resets it to 0;
  ``ever_lost`` says whether there was one).
* :meth:`forget` resets slots to a fresh identity (a neighbour that rejoins under a new name); a
  fresh slot has zero counts among seasoned ones, which ``agents.features`` shows as ``familiarity``.

Several samples for the same (node, slot) in one update are folded in as if applied one after
another with their mean: ``x += (1 - (1 - alpha) ** k) * (mean - x)``. That keeps updates
vectorised and deterministic.

Prediction and error (the origin's feedback loop): before a forward the node predicts the
piece's success with the neighbour's ``success`` estimate (:meth:`predict_success`); when the
outcome arrives, :meth:`record_outcomes` stores the absolute prediction error, and
``prediction_error`` keeps its EMA per node — how well the node's model of its neighbours
matches reality.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Credibility a neighbour starts with as a reporter, before any of its reports was tested
#: against this node's own evidence (``agents.gossip``).
INITIAL_CREDIBILITY = 0.6


@dataclass(frozen=True)
class MemoryRates:
    """EMA rates of :class:`NeighbourMemory`; each in (0, 1]."""

    alpha_bw: float = 0.2
    alpha_success: float = 0.15
    alpha_coop: float = 0.1
    alpha_delay: float = 0.2
    alpha_error: float = 0.05
    alpha_recent: float = 0.5


def _fold(values: np.ndarray, rows: np.ndarray, cols: np.ndarray, samples: np.ndarray, alpha: float) -> None:
    """Fold samples into ``values[rows, cols]`` by EMA, duplicates combined deterministically."""
    if rows.size == 0:
        return
    flat = rows.astype(np.int64) * values.shape[1] + cols
    touched, inverse = np.unique(flat, return_inverse=True)
    sums = np.bincount(inverse, weights=samples, minlength=touched.size)
    counts = np.bincount(inverse, minlength=touched.size)
    rate = 1.0 - (1.0 - alpha) ** counts
    view = values.reshape(-1)
    view[touched] += rate * (sums / counts - view[touched])


class NeighbourMemory:
    """Per-neighbour running statistics of ``n_nodes`` nodes with ``slots`` neighbour slots each."""

    def __init__(self, n_nodes: int, slots: int, rates: MemoryRates | None = None) -> None:
        self.rates = rates or MemoryRates()
        self.n_nodes = n_nodes
        self.slots = slots
        shape = (n_nodes, slots)
        self.claimed_bw = np.zeros(shape)
        self.observed_bw = np.zeros(shape)
        self.bw_count = np.zeros(shape)
        self.success = np.ones(shape)
        self.success_count = np.zeros(shape)
        self.cooperation = np.ones(shape)
        self.coop_count = np.zeros(shape)
        self.delay = np.zeros(shape)
        self.delay_count = np.zeros(shape)
        self.quote = np.zeros(shape)
        self.success_recent = np.ones(shape)
        self.since_loss = np.zeros(shape)
        self.ever_lost = np.zeros(shape, dtype=bool)
        self.custody = np.ones(shape)
        self.custody_count = np.zeros(shape)
        self.own_losses = np.zeros(shape)
        self.beyond_losses = np.zeros(shape)
        self.net_rate = np.ones(shape)
        self.net_weight = np.zeros(shape)
        self.net_reporters = np.zeros(shape)
        self.credibility = np.full(shape, INITIAL_CREDIBILITY)
        self.prediction_error = np.zeros(n_nodes)

    #: Per-slot arrays and the value a fresh slot starts from (reset and forget).
    _FRESH = (
        ("success", 1.0),
        ("cooperation", 1.0),
        ("success_recent", 1.0),
        ("custody", 1.0),
        ("net_rate", 1.0),
        ("credibility", INITIAL_CREDIBILITY),
        ("delay", 0.0),
        ("bw_count", 0.0),
        ("success_count", 0.0),
        ("coop_count", 0.0),
        ("delay_count", 0.0),
        ("since_loss", 0.0),
        ("custody_count", 0.0),
        ("own_losses", 0.0),
        ("beyond_losses", 0.0),
        ("net_weight", 0.0),
        ("net_reporters", 0.0),
    )

    def reset(self, claimed_bw: np.ndarray, quotes: np.ndarray) -> None:
        """Forget everything; start from the neighbours' announcements (claims and quotes)."""
        self.claimed_bw[:] = claimed_bw
        self.observed_bw[:] = claimed_bw
        self.quote[:] = quotes
        for name, fresh in self._FRESH:
            getattr(self, name)[:] = fresh
        self.ever_lost[:] = False
        self.prediction_error[:] = 0.0

    def forget(self, rows: np.ndarray, cols: np.ndarray, claimed_bw: np.ndarray, quotes: np.ndarray) -> None:
        """Forget slots ``(rows, cols)``: a new neighbour there, starting from its announcements."""
        self.claimed_bw[rows, cols] = claimed_bw
        self.observed_bw[rows, cols] = claimed_bw
        self.quote[rows, cols] = quotes
        for name, fresh in self._FRESH:
            getattr(self, name)[rows, cols] = fresh
        self.ever_lost[rows, cols] = False

    def _fold(self, values: np.ndarray, rows: np.ndarray, cols: np.ndarray, samples: np.ndarray, alpha: float) -> None:
        """Fold samples into ``values`` (module-level :func:`_fold`; the environment overrides it with
        a compiled kernel of the same arithmetic, ``envs.kernels.CompiledMemory``)."""
        _fold(values, rows, cols, samples, alpha)

    def record_transfers(self, rows: np.ndarray, cols: np.ndarray, throughput: np.ndarray) -> None:
        """A transfer to neighbour ``cols`` of node ``rows`` ran at ``throughput``."""
        self._fold(self.observed_bw, rows, cols, throughput, self.rates.alpha_bw)
        np.add.at(self.bw_count, (rows, cols), 1.0)

    def record_handovers(self, rows: np.ndarray, cols: np.ndarray, accepted: np.ndarray) -> None:
        """The neighbour accepted (1) or refused (0) a piece."""
        self._fold(self.cooperation, rows, cols, accepted.astype(np.float64), self.rates.alpha_coop)
        np.add.at(self.coop_count, (rows, cols), 1.0)

    def record_delays(self, rows: np.ndarray, cols: np.ndarray, delay: np.ndarray) -> None:
        """A piece waited ``delay`` steps in the neighbour's queue."""
        self._fold(self.delay, rows, cols, delay.astype(np.float64), self.rates.alpha_delay)
        np.add.at(self.delay_count, (rows, cols), 1.0)

    def predict_success(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Predicted probability that a piece sent to ``cols`` of ``rows`` is delivered."""
        return self.success[rows, cols]

    def record_outcomes(
        self, rows: np.ndarray, cols: np.ndarray, delivered: np.ndarray, own: np.ndarray | None = None
    ) -> None:
        """Pieces sent through these neighbours were delivered (1) or lost (0).

        Records the prediction error before learning from the outcome.

        :param own: per outcome, whether a loss happened while the neighbour itself held the piece
            (True) or beyond it, after it showed the next hop's acceptance (False); ignored for
            deliveries. None: every loss is the neighbour's own (a node without custody evidence).
        """
        if rows.size == 0:
            return
        outcome = delivered.astype(np.float64)
        error = np.abs(outcome - self.predict_success(rows, cols))
        sums = np.bincount(rows, weights=error, minlength=self.n_nodes)
        counts = np.bincount(rows, minlength=self.n_nodes)
        touched = counts > 0
        rate = 1.0 - (1.0 - self.rates.alpha_error) ** counts[touched]
        self.prediction_error[touched] += rate * (sums[touched] / counts[touched] - self.prediction_error[touched])
        self._fold(self.success, rows, cols, outcome, self.rates.alpha_success)
        self._fold(self.success_recent, rows, cols, outcome, self.rates.alpha_recent)
        np.add.at(self.success_count, (rows, cols), 1.0)
        # Outcomes of one update count as simultaneous: any loss among them is the latest event.
        lost = np.zeros(self.since_loss.shape, dtype=bool)
        lost[rows[outcome < 0.5], cols[outcome < 0.5]] = True
        np.add.at(self.since_loss, (rows, cols), outcome >= 0.5)
        self.since_loss[lost] = 0.0
        self.ever_lost |= lost
        self._record_custody(rows, cols, outcome >= 0.5, own)

    def _record_custody(
        self, rows: np.ndarray, cols: np.ndarray, delivered: np.ndarray, own: np.ndarray | None
    ) -> None:
        """Fold deliveries and own losses into ``custody``; count losses by who held the piece."""
        own = np.ones(rows.size, dtype=bool) if own is None else np.asarray(own, dtype=bool)
        blamed = ~delivered & own
        counted = delivered | blamed
        r, c = rows[counted], cols[counted]
        self._fold(self.custody, r, c, delivered[counted].astype(np.float64), self.rates.alpha_success)
        np.add.at(self.custody_count, (r, c), 1.0)
        np.add.at(self.own_losses, (rows[blamed], cols[blamed]), 1.0)
        beyond = ~delivered & ~own
        np.add.at(self.beyond_losses, (rows[beyond], cols[beyond]), 1.0)

    def interacted(self) -> np.ndarray:
        """Boolean ``(n_nodes, slots)``: the node has handed at least one piece to the neighbour."""
        return self.coop_count > 0
