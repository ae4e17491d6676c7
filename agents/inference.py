"""Numpy inference of an exported learned policy (``training.export``): no torch anywhere.

An export is a directory with ``policy.safetensors`` (the scorer's float32 weights) and
``manifest.json`` (observation spec and its hash, action spec, network shape, training config,
git commit, the command that trained it, the evaluation summary). :func:`load_policy` refuses an
export whose observation-spec hash differs from :func:`agents.features.obs_spec_hash`: the
policy would read features that mean something else.

The arithmetic is exactly ``training.policy.SlotScorer.forward_actor``::

    h       = phi(x_k)                                  per slot, shared weights
    context = mean of h over valid slots                valid: the ``active`` feature (1 or 0)
    score_k = w . act(A h_k + B context + b) + c        (B context = mean of B h: one matmul)
    action  = argmax over the action mask; probabilities = masked softmax
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agents.export_files import read_checked_manifest, read_weights
from agents.features import FEATURE_INDEX, N_FEATURES, PREFIX_SPECS, SLOTS, obs_spec_hash

FORMAT = "openstreaming-slot-scorer/1"
_ACTIVE = FEATURE_INDEX["active"]


class PolicyLoadError(ValueError):
    """An export that cannot be used; ``str(err)`` is one line saying why."""


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0, out=x)


def _tanh(x: np.ndarray) -> np.ndarray:
    return np.tanh(x, out=x)


_ACTIVATIONS = {"relu": _relu, "tanh": _tanh}


class NumpyPolicy:
    """A learned per-neighbour scorer evaluated with numpy; same ``act`` as the baselines.

    :param name: name shown in reports.
    :param layers: ``[(W, b), ...]`` of the per-slot trunk, ``W`` of shape ``(in, out)``.
    :param head: ``(A, B, b)``: head weights on the slot embedding and on the context, bias.
    :param score: ``(w, c)``: score weights ``(hidden,)`` and bias (a float).
    :param activation: ``relu`` or ``tanh``.
    :param manifest: the export's manifest (kept for reports).
    :param in_features: feature columns the network reads (the first ones of each slot row).
    """

    needs_oracle = False

    def __init__(
        self,
        name: str,
        layers: list[tuple[np.ndarray, np.ndarray]],
        head: tuple[np.ndarray, np.ndarray, np.ndarray],
        score: tuple[np.ndarray, float],
        activation: str = "relu",
        manifest: dict | None = None,
        in_features: int = N_FEATURES,
    ) -> None:
        self.name = name
        #: Feature columns the network reads (fewer than N_FEATURES for an older spec's export).
        self.in_features = in_features
        self.layers = layers
        head_a, head_b, self.head_bias = head
        self.hidden = head_a.shape[1]
        self.head_ab = np.ascontiguousarray(np.concatenate([head_a, head_b], axis=1))
        self.score_w, self.score_b = score
        self.activation = activation
        self._act = _ACTIVATIONS[activation]
        self.manifest = manifest or {}
        self._folded = _fold_biases(layers, head_a, head_b, self.head_bias) if activation == "relu" else None

    def _scores(self, x: np.ndarray) -> np.ndarray:
        """Slot scores without the score bias (a constant shift: argmax and softmax ignore it)."""
        if x.shape[-1] != self.in_features:
            x = x[..., : self.in_features]
        act = self._act
        H = self.hidden
        if x.shape[0] == 1 and self._folded is not None:
            # The live node's case: biases folded into the weights (see _fold_biases), 2-D arithmetic.
            x2 = x[0]
            h = x2
            for w in self._folded[0]:
                h = h @ w
                np.maximum(h, 0.0, out=h)
            g = h @ self._folded[1]  # (k, 2H): [h A | h B + head bias]
            v = x2[:, _ACTIVE]
            count = np.count_nonzero(v)
            context = v @ g[:, H:]
            if count > 1:
                context *= 1.0 / count
            z = g[:, :H]
            z += context
            np.maximum(z, 0.0, out=z)
            return (z @ self.score_w)[None]
        n, k, f = x.shape
        h = x.reshape(n * k, f)
        for w, b in self.layers:
            h = h @ w
            h += b
            act(h)
        g = (h @ self.head_ab).reshape(n, k, 2 * H)
        v = x[:, :, _ACTIVE]
        v = v / np.maximum(v.sum(axis=1, keepdims=True), 1.0)
        context = (v[:, None, :] @ g[:, :, H:])[:, 0, :]  # (n, H): mean over valid slots of h B
        z = g[:, :, :H] + (context + self.head_bias)[:, None, :]
        return act(z) @ self.score_w

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Unmasked slot scores ``(n, SLOTS)`` of ``features (n, SLOTS, N_FEATURES)`` (or one ``(SLOTS, F)``)."""
        x = np.asarray(features, dtype=np.float32)
        return self._scores(x[None] if x.ndim == 2 else x) + self.score_b

    def act(
        self,
        features: np.ndarray,
        action_mask: np.ndarray,
        rng: np.random.Generator | None = None,
        oracle_actions: np.ndarray | None = None,
    ) -> np.ndarray:
        """Greedy slot per decision: argmax of the masked scores (all-masked rows give slot 0)."""
        x = np.asarray(features, dtype=np.float32)
        scores = self._scores(x[None] if x.ndim == 2 else x)
        scores[np.asarray(action_mask).reshape(scores.shape) == 0] = -np.inf
        return scores.argmax(axis=-1)

    def probabilities(self, features: np.ndarray, action_mask: np.ndarray) -> np.ndarray:
        """Masked softmax over slots ``(n, SLOTS)``: the distribution the policy was trained to sample."""
        scores = self.scores(features).astype(np.float64)
        mask = np.asarray(action_mask, dtype=bool).reshape(scores.shape)
        scores = np.where(mask, scores, -np.inf)
        top = scores.max(axis=-1, keepdims=True)
        top = np.where(np.isfinite(top), top, 0.0)
        e = np.exp(scores - top)
        total = e.sum(axis=-1, keepdims=True)
        return np.where(total > 0, e / np.where(total > 0, total, 1.0), 0.0)


def _fold_biases(
    layers: list[tuple[np.ndarray, np.ndarray]], head_a: np.ndarray, head_b: np.ndarray, head_bias: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray]:
    """Weights with every bias folded in, for ReLU networks on *valid* slot rows.

    A valid slot's ``active`` feature is exactly 1, so the first layer's bias becomes that input's
    weight row; an extra hidden unit that copies it (ReLU(1) = 1) carries the constant through the
    next layers, whose biases become its weight rows; the head's bias joins the context half
    ``h B`` (the mean of a constant is that constant). Invalid rows (all zeros) then differ from the
    unfolded network, but they are masked out and weigh nothing in the context.
    """
    folded = []
    for i, (w, b) in enumerate(layers):
        d_in, d_out = w.shape
        aug = np.zeros((d_in + (i > 0), d_out + 1), dtype=np.float32)
        aug[:d_in, :d_out] = w
        const_row = _ACTIVE if i == 0 else d_in  # the input that is 1 on valid rows
        aug[const_row, :d_out] += b
        aug[const_row, d_out] = 1.0
        folded.append(aug)
    hidden = head_a.shape[1]
    head = np.zeros((head_a.shape[0] + 1, 2 * hidden), dtype=np.float32)
    head[:-1, :hidden] = head_a
    head[:-1, hidden:] = head_b
    head[-1, hidden:] = head_bias
    return folded, head


def _fail(directory: Path, reason: str) -> PolicyLoadError:
    return PolicyLoadError(f"policy '{directory}': {reason}")


def read_manifest(directory: str | Path, allow_prefix: bool = False) -> dict:
    """The export's manifest, checked for format and observation-spec hash.

    :param allow_prefix: also accept an older spec whose features are a prefix of this one's
        (``agents.features.PREFIX_SPECS``; the evaluation tools do, the live node does not).
    """
    return read_checked_manifest(
        Path(directory), FORMAT, "obs_spec_hash", obs_spec_hash(), "observation-spec", _fail,
        " (the policy was trained on other features; retrain or use a matching export)",
        tuple(PREFIX_SPECS) if allow_prefix else (),
    )  # fmt: skip


def read_export(directory: str | Path, allow_prefix: bool = False) -> tuple[dict, dict[str, np.ndarray]]:
    """The export's checked manifest and its weight tensors (numpy), not yet shaped into a policy."""
    return read_manifest(directory, allow_prefix), read_weights(Path(directory), _fail)


def load_policy(directory: str | Path, allow_prefix: bool = False) -> NumpyPolicy:
    """Load an export (``policy.safetensors`` + ``manifest.json``) for numpy inference.

    :param directory: the export directory (e.g. ``checkpoints/default``).
    :param allow_prefix: accept an export of an older observation spec whose features are a prefix
        of this one's (``checkpoints/pre_gossip`` is spec v2): the policy reads only its columns.
    :raises PolicyLoadError: missing or malformed files, or an observation-spec hash mismatch.
    """
    directory = Path(directory)
    manifest, tensors = read_export(directory, allow_prefix)
    in_features = PREFIX_SPECS.get(manifest["obs_spec_hash"], N_FEATURES)
    try:
        net = manifest["network"]
        depth, hidden, activation = int(net["depth"]), int(net["hidden"]), str(net["activation"])
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}")
        f32 = np.float32
        layers = []
        in_dim = in_features
        for i in range(depth):
            w = tensors[f"phi.{2 * i}.weight"].astype(f32)
            b = tensors[f"phi.{2 * i}.bias"].astype(f32)
            if w.shape != (hidden, in_dim) or b.shape != (hidden,):
                raise ValueError(f"phi layer {i} has shape {w.shape}, expected {(hidden, in_dim)}")
            layers.append((np.ascontiguousarray(w.T), b))
            in_dim = hidden
        hw = tensors["head.0.weight"].astype(f32)
        if hw.shape != (hidden, 2 * hidden):
            raise ValueError(f"head has shape {hw.shape}, expected {(hidden, 2 * hidden)}")
        head = (
            np.ascontiguousarray(hw[:, :hidden].T),
            np.ascontiguousarray(hw[:, hidden:].T),
            tensors["head.0.bias"].astype(f32),
        )
        sw = tensors["score.weight"].astype(f32).reshape(hidden)
        sb = float(tensors["score.bias"].reshape(-1)[0])
    except KeyError as err:
        raise _fail(directory, f"weights or manifest lack {err}") from None
    except (TypeError, ValueError) as err:
        raise _fail(directory, f"malformed network: {err}") from None
    if manifest.get("obs_spec", {}).get("slots", SLOTS) != SLOTS:
        raise _fail(directory, "slot count differs from this node's")
    name = str(manifest.get("name") or directory.name)
    return NumpyPolicy(name, layers, head, (sw, sb), activation, manifest, in_features)
