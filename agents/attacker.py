"""A learned attacker: what a dishonest node sees and can do, and its exported policy run with numpy.

The single source of the attacker's observation and action for the environment (``envs.learned``,
the ``attacker_*`` agents of ``envs.parallel``) and the live node (``runtime.node.learned``), as
``agents.features`` is for honest nodes. An attacker export's manifest carries
:func:`attacker_spec_hash`; :func:`load_attacker` refuses one whose hash differs.

Observation: ``ATTACKER_FEATURES`` (one float32 vector per attacker), only what a dishonest node
can know on the wire: the piece it holds (value, deadline, hops, how far it is from its
destination), its own queue, its neighbours (how many, how many are fellow attackers, their
quotes), how often it is chosen, what it earns, how often it drops, what it announces now.

Action: ``MultiDiscrete(ACTION_NVEC)``, five choices per step:

====================  ==================================================================
``handling``          what to do with the head-of-line piece: forward (greedy shortest path),
                      drop (upstream learns only at the deadline), or hold it one more step
``quote``             its price: ``QUOTE_FACTORS`` x the origin's fair formula on its load
``claim``             the bandwidth it claims: ``CLAIM_FACTORS`` x its real capacity
``route_discount``    the factor on the route latencies it advertises: ``ROUTE_DISCOUNTS``
``gossip``            what it reports of its neighbours in trust gossip (``agents.gossip``):
                      the truth, praise for its fellow attackers (rate 1, the largest
                      count), or that praise and slander of its honest neighbours (rate 0)
====================  ==================================================================

The announcements (quote, claim, routes, gossip) take effect for the honest nodes' next decisions.
:data:`NULL_ACTION` is an honest node's behaviour (forward, fair quote, true claim, true routes):
:class:`NullAttacker` plays it, the reference every attack is measured against.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Protocol

import numpy as np

from agents.export_files import WEIGHTS, read_checked_manifest, read_weights
from agents.features import LATENCY_SCALE, MAX_HOPS, SLOTS

FORWARD, DROP, HOLD = 0, 1, 2
HANDLING = ("forward", "drop", "hold")
QUOTE_FACTORS = (0.5, 0.7, 0.85, 1.0, 1.5, 3.0)
CLAIM_FACTORS = (0.5, 1.0, 1.25, 1.5)
ROUTE_DISCOUNTS = (0.25, 0.5, 0.75, 1.0)
GOSSIP_TRUTHFUL, GOSSIP_PRAISE, GOSSIP_SLANDER = 0, 1, 2
GOSSIP = ("truthful", "praise_allies", "slander_honest")
#: Choices per action component: handling, quote, claim, route discount, gossip.
ACTION_NVEC = (len(HANDLING), len(QUOTE_FACTORS), len(CLAIM_FACTORS), len(ROUTE_DISCOUNTS), len(GOSSIP))
#: Forward, quote 1.0 x fair, claim 1.0 x capacity, routes as they are, true reports: an honest node.
NULL_ACTION = (
    FORWARD,
    QUOTE_FACTORS.index(1.0),
    CLAIM_FACTORS.index(1.0),
    ROUTE_DISCOUNTS.index(1.0),
    GOSSIP_TRUTHFUL,
)
#: Weight of the newest sample in the attacker's running rates (chosen, earnings, drops).
RATE_ALPHA = 0.1

#: (name, meaning) of each observation entry, in order. Part of the attacker-spec hash.
ATTACKER_FEATURES: tuple[tuple[str, str], ...] = (
    ("active", "1 if the node holds a piece to decide on this step (the piece entries are 0 otherwise)"),
    ("own_queue", "own queue length / queue limit"),
    ("value", "piece: value / the mean piece value of its streams"),
    ("time_left", "piece: steps before its deadline / LATENCY_SCALE, clipped to [0, 3]"),
    ("hops", "piece: hops travelled so far / MAX_HOPS"),
    ("dest_distance", "piece: own shortest-path latency to its destination / LATENCY_SCALE, clipped to [0, 3]"),
    ("dest_is_neighbour", "piece: 1 if its destination is a neighbour"),
    ("degree", "present neighbours / SLOTS"),
    ("allies", "share of its present neighbours that are fellow attackers"),
    ("chosen_rate", "running rate (RATE_ALPHA) of pieces handed to it per step"),
    ("earnings_rate", "running rate of money received per step / its own cost of forwarding one unit"),
    ("drop_rate", "running rate of drops among its handling decisions"),
    ("quote_ratio", "its quote / the median quote of its neighbours, clipped to [0, 5]"),
    ("claim_factor", "bandwidth it claims now / its capacity"),
    ("route_discount", "factor it applies to the routes it advertises now"),
    ("capacity", "its real forwarding bandwidth, pieces/step"),
)
N_ATTACKER_FEATURES = len(ATTACKER_FEATURES)
ATTACKER_FEATURE_INDEX = {name: i for i, (name, _) in enumerate(ATTACKER_FEATURES)}
ATTACKER_SPEC = {
    "version": 2,
    "features": [{"name": n, "meaning": m} for n, m in ATTACKER_FEATURES],
    "actions": {
        "handling": list(HANDLING),
        "quote_factors": list(QUOTE_FACTORS),
        "claim_factors": list(CLAIM_FACTORS),
        "route_discounts": list(ROUTE_DISCOUNTS),
        "gossip": list(GOSSIP),
    },
}
ATTACKER_FORMAT = "openstreaming-attacker/1"


def attacker_spec_hash(spec: dict | None = None) -> str:
    """SHA-256 (hex) of the canonical JSON of the attacker spec (default: :data:`ATTACKER_SPEC`)."""
    canonical = json.dumps(ATTACKER_SPEC if spec is None else spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def attacker_features(
    *,
    active: np.ndarray,
    own_queue: np.ndarray,
    value: np.ndarray,
    time_left: np.ndarray,
    hops: np.ndarray,
    dest_distance: np.ndarray,
    dest_is_neighbour: np.ndarray,
    degree: np.ndarray,
    allies: np.ndarray,
    chosen_rate: np.ndarray,
    earnings_rate: np.ndarray,
    drop_rate: np.ndarray,
    quote_ratio: np.ndarray,
    claim_factor: np.ndarray,
    route_discount: np.ndarray,
    capacity: np.ndarray,
) -> np.ndarray:
    """``(n, N_ATTACKER_FEATURES)`` float32 rows from raw quantities (steps, counts, ratios).

    :param time_left: steps before the piece's deadline; :param hops: hops so far;
        :param dest_distance: shortest-path latency to the destination in steps;
        :param degree: present neighbours (a count). The other arguments are as in
        :data:`ATTACKER_FEATURES`. Piece entries of rows without a piece are zeroed.
    """
    on = np.asarray(active, dtype=np.float64)
    cols = [
        on,
        own_queue,
        on * value,
        on * np.clip(np.asarray(time_left, dtype=np.float64) / LATENCY_SCALE, 0.0, 3.0),
        on * np.asarray(hops, dtype=np.float64) / MAX_HOPS,
        on * np.clip(np.asarray(dest_distance, dtype=np.float64) / LATENCY_SCALE, 0.0, 3.0),
        on * dest_is_neighbour,
        np.asarray(degree, dtype=np.float64) / SLOTS,
        allies,
        chosen_rate,
        earnings_rate,
        drop_rate,
        np.clip(quote_ratio, 0.0, 5.0),
        claim_factor,
        route_discount,
        capacity,
    ]
    out = np.column_stack([np.broadcast_to(np.asarray(c, dtype=np.float64), on.shape) for c in cols])
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


class AttackerPolicy(Protocol):
    """Anything that picks the attacker choices (one per ``ACTION_NVEC`` component) per row of attacker features."""

    name: str

    def act(self, features: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """``features (n, N_ATTACKER_FEATURES)`` -> ``(n, len(ACTION_NVEC))`` int action rows."""
        ...


class NullAttacker:
    """Acts as an honest node: forward everything, fair quote, true claim, true routes."""

    name = "null"

    def act(self, features: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        return np.tile(np.asarray(NULL_ACTION, dtype=np.int64), (len(features), 1))


class AttackerLoadError(ValueError):
    """An attacker export that cannot be used; ``str(err)`` is one line saying why."""


class NumpyAttacker:
    """An exported attacker (an MLP over :data:`ATTACKER_FEATURES` with one softmax per action
    component) evaluated with numpy.

    :param name: shown in reports.
    :param layers: ``[(W, b), ...]`` of the trunk, ``W`` of shape ``(in, out)``, tanh after each.
    :param logits: ``(W, b)`` of the output layer, ``sum(ACTION_NVEC)`` logits.
    :param deterministic: take the most likely choice instead of sampling the trained distribution.
    :param manifest: the export's manifest (kept for reports).
    """

    def __init__(
        self,
        name: str,
        layers: list[tuple[np.ndarray, np.ndarray]],
        logits: tuple[np.ndarray, np.ndarray],
        deterministic: bool = False,
        manifest: dict | None = None,
    ) -> None:
        self.name = name
        self.layers = layers
        self.logits_w, self.logits_b = logits
        self.deterministic = deterministic
        self.manifest = manifest or {}
        self._splits = np.cumsum(ACTION_NVEC)[:-1]

    def logits(self, features: np.ndarray) -> list[np.ndarray]:
        """Per action component, the ``(n, choices)`` logits of ``features (n, N_ATTACKER_FEATURES)``."""
        h = np.asarray(features, dtype=np.float32).reshape(-1, N_ATTACKER_FEATURES)
        for w, b in self.layers:
            h = np.tanh(h @ w + b)
        return np.split(h @ self.logits_w + self.logits_b, self._splits, axis=1)

    def act(self, features: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Sample each component from its softmax (``rng``), or its argmax when deterministic."""
        parts = self.logits(features)
        if self.deterministic:
            return np.stack([p.argmax(axis=1) for p in parts], axis=1).astype(np.int64)
        rng = rng if rng is not None else np.random.default_rng()
        # Gumbel-max: argmax(logits + Gumbel noise) is a sample of softmax(logits).
        return np.stack([(p - np.log(-np.log(rng.random(p.shape)))).argmax(axis=1) for p in parts], axis=1).astype(
            np.int64
        )


def _fail(directory: Path, reason: str) -> AttackerLoadError:
    return AttackerLoadError(f"attacker policy '{directory}': {reason}")


def load_attacker(directory: str | Path, deterministic: bool = False) -> NumpyAttacker:
    """Load an attacker export (``policy.safetensors`` + ``manifest.json``, ``training.attack``).

    :raises AttackerLoadError: missing or malformed files, or an attacker-spec hash mismatch.
    """
    directory = Path(directory)
    manifest = read_checked_manifest(
        directory, ATTACKER_FORMAT, "attacker_spec_hash", attacker_spec_hash(), "attacker-spec", _fail
    )
    tensors = read_weights(directory, _fail)
    try:
        hidden = [int(h) for h in manifest["network"]["hidden"]]
        layers, in_dim = [], N_ATTACKER_FEATURES
        for i, width in enumerate(hidden):
            w = tensors[f"policy_net.{2 * i}.weight"].astype(np.float32)
            b = tensors[f"policy_net.{2 * i}.bias"].astype(np.float32)
            if w.shape != (width, in_dim) or b.shape != (width,):
                raise ValueError(f"layer {i} has shape {w.shape}, expected {(width, in_dim)}")
            layers.append((np.ascontiguousarray(w.T), b))
            in_dim = width
        w = tensors["action_net.weight"].astype(np.float32)
        b = tensors["action_net.bias"].astype(np.float32)
        if w.shape != (sum(ACTION_NVEC), in_dim):
            raise ValueError(f"output layer has shape {w.shape}, expected {(sum(ACTION_NVEC), in_dim)}")
        # Layers the manifest does not list would be skipped silently: a different network.
        listed = {f"policy_net.{2 * i}.{p}" for i in range(len(hidden)) for p in ("weight", "bias")}
        extra = sorted(set(tensors) - listed - {"action_net.weight", "action_net.bias"})
        if extra:
            raise ValueError(f"{WEIGHTS} holds {extra[0]}, which network.hidden does not list")
    except KeyError as err:
        raise _fail(directory, f"weights or manifest lack {err}") from None
    except (TypeError, ValueError) as err:
        raise _fail(directory, f"malformed network: {err}") from None
    name = str(manifest.get("name") or directory.name)
    return NumpyAttacker(name, layers, (np.ascontiguousarray(w.T), b), deterministic, manifest)
