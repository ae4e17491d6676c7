"""Observation of one routing decision: the single source of truth for env and live node.

A decision is "which neighbour gets this piece". Its observation is a ``(SLOTS, N_FEATURES)``
float32 matrix: one row per neighbour slot, holding what the node's memory knows of that
neighbour followed by the piece's own features (repeated on every row, so a per-slot scorer
with shared weights sees everything it needs). Slots beyond the node's degree are all zeros
and masked out by ``action_mask``.

The environment (``envs.core``) and the live node (``runtime.node``) both call
:func:`build_observation`; an exported policy's manifest carries :func:`obs_spec_hash`, and a
node refuses a policy whose hash differs from its own.

Times are in environment steps; the live node converts seconds to steps with its configured
step length. ``LATENCY_SCALE`` steps map to 1.0.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from agents.economics import fair_price
from agents.empathy import COHERENCE_THRESHOLD, coherence_score
from agents.gossip import rating
from agents.memory import NeighbourMemory
from agents.propagation import SEED_WEIGHTS, component_scores, route_score

#: Neighbour slots per node (peers a node keeps); higher-degree nodes keep their SLOTS nearest.
SLOTS = 8
#: Steps that map to 1.0 in time features.
LATENCY_SCALE = 20.0
#: Hop budget of a piece; it is dropped after this many hops.
MAX_HOPS = 16

#: (name, meaning) of each feature column, in order. Part of the observation-spec hash.
FEATURES: tuple[tuple[str, str], ...] = (
    ("claimed_bw", "bandwidth the neighbour claims, pieces/step (1.0 = a full-speed node)"),
    ("observed_bw", "EMA of measured transfer throughput to the neighbour (claim until measured)"),
    ("bw_ratio", "observed_bw / claimed_bw, clipped to [0, 2]"),
    ("bw_confidence", "bandwidth sample count n as n / (n + 3)"),
    ("price_ratio", "neighbour's quote / fair price (median of the node's neighbours' quotes), clipped to [0, 5]"),
    ("success_rate", "EMA of delivered (1) / lost (0) outcomes of pieces sent through the neighbour"),
    ("success_confidence", "outcome count n as n / (n + 5)"),
    ("cooperation", "EMA of accepted (1) / refused (0) hand-overs"),
    ("queue_delay", "EMA of steps a piece waited in the neighbour's queue, / LATENCY_SCALE"),
    ("link_latency", "link latency to the neighbour, / LATENCY_SCALE"),
    ("est_latency", "link latency + routing-table latency from the neighbour to the destination, / LATENCY_SCALE"),
    ("slack", "(time left before the deadline - est_latency) / LATENCY_SCALE, clipped to [-2, 2]"),
    ("is_destination", "1 if the neighbour is the piece's destination"),
    ("coherence", "the origin's coherence score of the neighbour (agents.empathy)"),
    ("coherent", "1 if coherence > 0.7 (the origin's verdict)"),
    ("seed_score", "the origin's route score 0.3 lat + 0.3 bw + 0.2 econ + 0.2 empathy"),
    ("latency_score", "the seed's latency component: best est_latency / this est_latency"),
    ("time_left", "piece: steps left before its deadline, / LATENCY_SCALE, clipped to [0, 3]"),
    ("value", "piece: value paid by the subscriber on delivery"),
    ("size", "piece: size in units (payments and costs scale with it)"),
    ("hops", "piece: hops travelled so far / MAX_HOPS"),
    ("own_queue", "node: own queue length / queue limit"),
    ("success_recent", "fast EMA (alpha 0.5, about the last 2-3 outcomes) of delivered / lost through the neighbour"),
    ("success_trend", "success_recent - success_rate: negative when the neighbour got worse lately"),
    ("loss_recency", "1 / (1 + outcomes since the last loss through the neighbour); 0 if none was ever lost"),
    ("familiarity", "hand-overs to the neighbour / the most to any neighbour of the node (1 before any): low = new"),
    ("active", "1 if the node has a piece to route this step (else the whole row is zeros)"),
    # Observation spec v3: custody and what the network says (agents.gossip); after v2's columns, so
    # a v2 policy reads the first V2_FEATURES columns of a v3 observation unchanged.
    ("custody_rate", "EMA of delivered (1) / lost while the neighbour held the piece (0); no sample for losses beyond"),
    ("own_loss_share", "losses while the neighbour held the piece / all losses through it (0 before any loss)"),
    ("net_rate", "custody rate the neighbour's other neighbours report, weighted by agents.gossip (1 before any)"),
    ("net_reporters", "reporters whose report on the neighbour weighs in (agents.gossip.MIN_WEIGHT), / SLOTS"),
    ("net_disagreement", "|net_rate - custody_rate| when someone reports on the neighbour, else 0"),
    ("rating", "the node's verdict: own custody rate blended with the network view (agents.gossip.rating)"),
)
#: Columns of observation spec v2 (the features up to ``active``); a v2 export reads these.
V2_FEATURES = 27
FEATURE_NAMES: tuple[str, ...] = tuple(name for name, _ in FEATURES)
FEATURE_INDEX: dict[str, int] = {name: i for i, name in enumerate(FEATURE_NAMES)}
N_FEATURES = len(FEATURES)

OBS_SPEC: dict = {
    "version": 3,
    "slots": SLOTS,
    "features": [{"name": n, "meaning": m} for n, m in FEATURES],
    "latency_scale": LATENCY_SCALE,
    "max_hops": MAX_HOPS,
    "seed_weights": list(SEED_WEIGHTS),
    "dtype": "float32",
    "action": "index of the neighbour slot in [0, slots); slots with action_mask == 0 are invalid",
}


def obs_spec_hash(spec: dict | None = None) -> str:
    """SHA-256 (hex) of the canonical JSON of an observation spec (default: :data:`OBS_SPEC`)."""
    canonical = json.dumps(OBS_SPEC if spec is None else spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


#: Observation spec v2 (before custody and gossip): the first :data:`V2_FEATURES` columns of v3.
OBS_SPEC_V2: dict = {**OBS_SPEC, "version": 2, "features": OBS_SPEC["features"][:V2_FEATURES]}
#: Hashes of older specs whose columns are a prefix of this one's, with their column count: the
#: evaluation tools run such an export on the first columns; the live node refuses it.
PREFIX_SPECS: dict[str, int] = {obs_spec_hash(OBS_SPEC_V2): V2_FEATURES}


@dataclass
class DecisionContext:
    """What a node knows of the piece and its neighbourhood, besides its memory.

    Arrays have a leading dimension ``n`` (one decision per row); per-slot arrays are ``(n, SLOTS)``.
    """

    rows: np.ndarray  # (n,) index of the deciding node in the memory
    mask: np.ndarray  # (n, K) bool: slot holds a neighbour
    link_latency: np.ndarray  # (n, K) steps
    route_latency: np.ndarray  # (n, K) routing-table latency from the neighbour to the destination
    is_destination: np.ndarray  # (n, K) bool
    time_left: np.ndarray  # (n,) steps
    value: np.ndarray  # (n,)
    size: np.ndarray  # (n,)
    hops: np.ndarray  # (n,)
    own_queue: np.ndarray  # (n,) fraction of the queue limit
    active: np.ndarray  # (n,) bool


@dataclass
class Observation:
    """Result of :func:`build_observation`."""

    features: np.ndarray  # (n, K, N_FEATURES) float32
    action_mask: np.ndarray  # (n, K) int8
    coherence: np.ndarray  # (n, K)
    coherent: np.ndarray  # (n, K) bool
    seed_score: np.ndarray  # (n, K)


def build_observation(memory: NeighbourMemory, ctx: DecisionContext) -> Observation:
    """Features of each neighbour slot for each decision row of ``ctx``."""
    r = ctx.rows
    mask = ctx.mask.astype(bool)
    claimed = memory.claimed_bw[r]
    observed = memory.observed_bw[r]
    quotes = memory.quote[r]
    success = memory.success[r]
    coop = memory.cooperation[r]
    fair = fair_price(quotes, mask)
    fair_b = np.where(np.isnan(fair), 1.0, fair)[:, None]

    coherence = coherence_score(observed, claimed, quotes, fair_b, success, coop)
    coherence = np.where(mask, coherence, 0.0)
    coherent = (coherence > COHERENCE_THRESHOLD) & mask
    est_latency = ctx.link_latency + np.where(ctx.is_destination, 0.0, ctx.route_latency)
    lat_s, bw_s, eco_s, emp_s = component_scores(est_latency, claimed, quotes, fair_b[:, 0], coherence, mask)
    seed = np.where(mask, route_score(lat_s, bw_s, eco_s, emp_s), 0.0)

    n = r.shape[0]
    # Filled feature-major (contiguous planes), transposed once at the end: much faster than
    # writing N_FEATURES strided columns.
    planes = np.empty((N_FEATURES, n, SLOTS), dtype=np.float32)
    scale = LATENCY_SCALE
    planes[0] = claimed
    planes[1] = observed
    planes[2] = np.clip(observed / np.maximum(claimed, 1e-9), 0.0, 2.0)
    bwc = memory.bw_count[r]
    planes[3] = bwc / (bwc + 3.0)
    planes[4] = np.clip(quotes / fair_b, 0.0, 5.0)
    planes[5] = success
    sc = memory.success_count[r]
    planes[6] = sc / (sc + 5.0)
    planes[7] = coop
    planes[8] = memory.delay[r] / scale
    planes[9] = ctx.link_latency / scale
    planes[10] = est_latency / scale
    planes[11] = np.clip((ctx.time_left[:, None] - est_latency) / scale, -2.0, 2.0)
    planes[12] = ctx.is_destination
    planes[13] = coherence
    planes[14] = coherent
    planes[15] = seed
    planes[16] = lat_s
    planes[17] = np.clip(ctx.time_left / scale, 0.0, 3.0)[:, None]
    planes[18] = ctx.value[:, None]
    planes[19] = ctx.size[:, None]
    planes[20] = (ctx.hops / MAX_HOPS)[:, None]
    planes[21] = ctx.own_queue[:, None]
    recent = memory.success_recent[r]
    planes[22] = recent
    planes[23] = recent - success
    planes[24] = np.where(memory.ever_lost[r], 1.0 / (1.0 + memory.since_loss[r]), 0.0)
    handed = np.where(mask, memory.coop_count[r], 0.0)
    most = handed.max(axis=1, keepdims=True)
    planes[25] = np.where(most > 0, handed / np.maximum(most, 1.0), 1.0)
    planes[26] = 1.0
    planes[27] = memory.custody[r]
    own, beyond = memory.own_losses[r], memory.beyond_losses[r]
    planes[28] = own / np.maximum(own + beyond, 1.0)
    net_rate = memory.net_rate[r]
    planes[29] = net_rate
    reporters = memory.net_reporters[r]
    planes[30] = reporters / SLOTS
    planes[31] = np.where(reporters > 0, np.abs(net_rate - memory.custody[r]), 0.0)
    planes[32] = rating(memory, r)
    keep = mask & ctx.active.astype(bool)[:, None]
    planes *= keep[None]
    out = np.ascontiguousarray(planes.transpose(1, 2, 0))
    return Observation(
        features=out,
        action_mask=mask.astype(np.int8),
        coherence=coherence,
        coherent=coherent,
        seed_score=seed,
    )
