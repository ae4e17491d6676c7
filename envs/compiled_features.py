"""``agents.features.build_observation`` compiled for the environment's batch, the same bits.

The environment builds an observation for every deciding agent at every step; in numpy that is some
sixty whole-array passes, a large share of a step for small and large meshes alike. This kernel
computes each slot's features in one pass over the rows, with the same float64 arithmetic in the
same order as the numpy functions it mirrors (``agents.economics.masked_median``,
``agents.empathy.coherence_score``, ``agents.propagation.component_scores`` and ``route_score``,
``agents.gossip.rating``), rounds each feature to float32 where numpy's assignment does, and writes
straight into the batch's output rows. ``tests/envs/test_compiled_features.py`` checks it against
``build_observation`` bit for bit; ``agents`` stays numpy only (the live node imports it).
"""

from __future__ import annotations

import numpy as np

from agents.empathy import (
    BANDWIDTH_TOLERANCE,
    COHERENCE_THRESHOLD,
    COOPERATION_THRESHOLD,
    PRICE_TOLERANCE,
    SUCCESS_THRESHOLD,
)
from agents.features import LATENCY_SCALE, MAX_HOPS, N_FEATURES, SLOTS, DecisionContext
from agents.gossip import NET_WEIGHT_CAP, OWN_WEIGHT_CAP, PRIOR_WEIGHT
from agents.memory import NeighbourMemory
from agents.propagation import SEED_WEIGHTS
from envs import kernels

#: Memory fields the kernel reads, in the order of its ``fields`` tuple.
FIELDS = (
    "claimed_bw",
    "observed_bw",
    "quote",
    "success",
    "cooperation",
    "bw_count",
    "success_count",
    "delay",
    "success_recent",
    "since_loss",
    "coop_count",
    "custody",
    "own_losses",
    "beyond_losses",
    "net_rate",
    "net_reporters",
    "custody_count",
    "net_weight",
)
#: Per-row inputs of the decision context, in the order of the kernel's ``ctx_row`` tuple.
ROW_INPUTS = ("time_left", "value", "size", "hops", "own_queue")
#: Constants of the mirrored functions, in the order of the kernel's ``constants`` tuple.
CONSTANTS = (
    LATENCY_SCALE,
    float(MAX_HOPS),
    float(SLOTS),
    BANDWIDTH_TOLERANCE,
    PRICE_TOLERANCE,
    SUCCESS_THRESHOLD,
    COOPERATION_THRESHOLD,
    COHERENCE_THRESHOLD,
    *SEED_WEIGHTS,
    PRIOR_WEIGHT,
    OWN_WEIGHT_CAP,
    NET_WEIGHT_CAP,
)


def _clip_py(x, lo, hi):  # pragma: no cover - compiled
    """``np.clip`` of a scalar (NaN passes through, as in numpy)."""
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x


_clip = (kernels.jit(_clip_py) if kernels.ENABLED else None) or _clip_py


def _observation_py(out_rows, rows, ctx_slot, is_dest, mask, ctx_row, active, fields, ever_lost, constants, out):
    # pragma: no cover - compiled
    """Features of the slots of memory ``rows`` into ``out`` at ``out_rows`` (see the module docstring).

    ``ctx_slot``: ``(link_latency, route_latency)``; ``ctx_row``: ``(time_left, value, size, hops,
    own_queue)``; ``out``: ``(features, coherence, coherent, seed)``.
    """
    link_latency, route_latency = ctx_slot
    time_left, value, size, hops, own_queue = ctx_row
    (
        claimed_bw,
        observed_bw,
        quote,
        success,
        cooperation,
        bw_count,
        success_count,
        delay,
        success_recent,
        since_loss,
        coop_count,
        custody,
        own_losses,
        beyond_losses,
        net_rate,
        net_reporters,
        custody_count,
        net_weight,
    ) = fields
    (
        scale,
        max_hops,
        slots_f,
        bw_tol,
        price_tol,
        success_thr,
        coop_thr,
        coherence_thr,
        w_lat,
        w_bw,
        w_eco,
        w_emp,
        prior_weight,
        own_cap,
        net_cap,
    ) = constants
    features, coherence_out, coherent_out, seed_out = out
    n_slots = mask.shape[1]
    ordered = np.empty(n_slots)
    est = np.empty(n_slots)
    coh = np.empty(n_slots)
    for a in range(rows.size):
        r, o = rows[a], out_rows[a]
        # fair_price: masked median of the quotes (inf where masked, sorted), nan without neighbours
        count = 0
        for s in range(n_slots):
            ordered[s] = quote[r, s] if mask[a, s] else np.inf
            count += 1 if mask[a, s] else 0
        ordered.sort()
        lo = max((count - 1) // 2, 0)
        hi = max(count // 2, 0)
        fair = 0.5 * (ordered[lo] + ordered[hi]) if count > 0 else np.nan
        fair_b = 1.0 if np.isnan(fair) else fair
        best_lat = np.inf
        bw_max = -np.inf
        most = -np.inf
        for s in range(n_slots):
            m = mask[a, s]
            est[s] = link_latency[a, s] + (0.0 if is_dest[a, s] else route_latency[a, s])
            lat = est[s] if m else 1e9
            best_lat = min(best_lat, lat)
            bw_max = max(bw_max, claimed_bw[r, s] if m else 0.0)
            most = max(most, coop_count[r, s] if m else 0.0)
            tenths = (
                3 * (1 if observed_bw[r, s] >= bw_tol * claimed_bw[r, s] else 0)
                + 3 * (1 if abs(quote[r, s] - fair_b) < price_tol * fair_b else 0)
                + 2 * (1 if success[r, s] >= success_thr else 0)
                + 2 * (1 if cooperation[r, s] >= coop_thr else 0)
            )
            coh[s] = tenths / 10.0 if m else 0.0
        left = time_left[a]
        for s in range(n_slots):
            m = mask[a, s]
            keep = np.float32(1.0 if m and active[a] else 0.0)
            f = features[o, s]
            lat_s = best_lat / max(est[s] if m else 1e9, 1e-9) if m else 0.0
            bw_s = (claimed_bw[r, s] if m else 0.0) / max(bw_max, 1e-9)
            eco_s = min(1.0, fair_b / max(quote[r, s], 1e-12)) if m else 0.0
            seed = (w_lat * lat_s + w_bw * bw_s + w_eco * eco_s + w_emp * coh[s]) if m else 0.0
            coherent = coh[s] > coherence_thr and m
            handed = coop_count[r, s] if m else 0.0
            own, beyond = own_losses[r, s], beyond_losses[r, s]
            reporters = net_reporters[r, s]
            own_weight = prior_weight + min(custody_count[r, s], own_cap)
            net_w = min(net_weight[r, s], net_cap)
            f[0] = np.float32(claimed_bw[r, s]) * keep
            f[1] = np.float32(observed_bw[r, s]) * keep
            f[2] = np.float32(_clip(observed_bw[r, s] / max(claimed_bw[r, s], 1e-9), 0.0, 2.0)) * keep
            f[3] = np.float32(bw_count[r, s] / (bw_count[r, s] + 3.0)) * keep
            f[4] = np.float32(_clip(quote[r, s] / fair_b, 0.0, 5.0)) * keep
            f[5] = np.float32(success[r, s]) * keep
            f[6] = np.float32(success_count[r, s] / (success_count[r, s] + 5.0)) * keep
            f[7] = np.float32(cooperation[r, s]) * keep
            f[8] = np.float32(delay[r, s] / scale) * keep
            f[9] = np.float32(link_latency[a, s] / scale) * keep
            f[10] = np.float32(est[s] / scale) * keep
            f[11] = np.float32(_clip((left - est[s]) / scale, -2.0, 2.0)) * keep
            f[12] = np.float32(1.0 if is_dest[a, s] else 0.0) * keep
            f[13] = np.float32(coh[s]) * keep
            f[14] = np.float32(1.0 if coherent else 0.0) * keep
            f[15] = np.float32(seed) * keep
            f[16] = np.float32(lat_s) * keep
            f[17] = np.float32(_clip(left / scale, 0.0, 3.0)) * keep
            f[18] = np.float32(value[a]) * keep
            f[19] = np.float32(size[a]) * keep
            f[20] = np.float32(hops[a] / max_hops) * keep
            f[21] = np.float32(own_queue[a]) * keep
            f[22] = np.float32(success_recent[r, s]) * keep
            f[23] = np.float32(success_recent[r, s] - success[r, s]) * keep
            f[24] = np.float32(1.0 / (1.0 + since_loss[r, s]) if ever_lost[r, s] else 0.0) * keep
            f[25] = np.float32(handed / max(most, 1.0) if most > 0 else 1.0) * keep
            f[26] = np.float32(1.0) * keep
            f[27] = np.float32(custody[r, s]) * keep
            f[28] = np.float32(own / max(own + beyond, 1.0)) * keep
            f[29] = np.float32(net_rate[r, s]) * keep
            f[30] = np.float32(reporters / slots_f) * keep
            f[31] = np.float32(abs(net_rate[r, s] - custody[r, s]) if reporters > 0 else 0.0) * keep
            f[32] = np.float32((own_weight * custody[r, s] + net_w * net_rate[r, s]) / (own_weight + net_w)) * keep
            coherence_out[o, s] = coh[s]
            coherent_out[o, s] = coherent
            seed_out[o, s] = seed


observation_kernel = kernels.jit(_observation_py) if kernels.ENABLED else None


def fill_observation(
    memory: NeighbourMemory,
    ctx: DecisionContext,
    out_rows: np.ndarray,
    features: np.ndarray,
    coherence: np.ndarray,
    coherent: np.ndarray,
    seed: np.ndarray,
) -> bool:
    """Write ``build_observation(memory, ctx)``'s rows into the outputs at ``out_rows``; False (nothing
    written) where the kernels are off, so the caller takes the numpy path.

    ``features`` is ``(n, SLOTS, N_FEATURES)`` float32, ``coherence`` and ``seed`` ``(n, SLOTS)``
    float64, ``coherent`` ``(n, SLOTS)`` bool; rows not in ``out_rows`` are left as
    they are.
    """
    if not kernels.ENABLED or observation_kernel is None:
        return False
    if features.shape[1:] != (SLOTS, N_FEATURES) or features.dtype != np.float32:
        raise ValueError(f"features must be (n, {SLOTS}, {N_FEATURES}) float32")
    f64 = np.float64
    observation_kernel(
        np.ascontiguousarray(out_rows, dtype=np.int64),
        np.ascontiguousarray(ctx.rows, dtype=np.int64),
        (np.ascontiguousarray(ctx.link_latency, dtype=f64), np.ascontiguousarray(ctx.route_latency, dtype=f64)),
        np.ascontiguousarray(ctx.is_destination, dtype=bool),
        np.ascontiguousarray(ctx.mask, dtype=bool),
        tuple(np.ascontiguousarray(getattr(ctx, name), dtype=f64) for name in ROW_INPUTS),
        np.ascontiguousarray(ctx.active, dtype=bool),
        tuple(getattr(memory, name) for name in FIELDS),
        memory.ever_lost,
        CONSTANTS,
        (features, coherence, coherent, seed),
    )
    return True
