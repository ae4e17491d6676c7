"""Matplotlib picture of one mesh of a :class:`~envs.core.MeshCore` as an RGB array."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from envs.core import (
    BALLOT_STUFFER,
    BLACKHOLE,
    FORGER,
    GREY_HOLE,
    HONEST,
    LEARNED,
    LIAR,
    ON_OFF,
    OVERPRICER,
    SELECTIVE,
    SLANDERER,
    WHITEWASHER,
    MeshCore,
)

KIND_COLOURS = {
    HONEST: "#2e9e44",
    LIAR: "#f28e2b",
    BLACKHOLE: "#222222",
    OVERPRICER: "#8c52c4",
    FORGER: "#c0392b",
    GREY_HOLE: "#777777",
    ON_OFF: "#555555",
    SELECTIVE: "#999999",
    WHITEWASHER: "#444444",
    SLANDERER: "#d4a017",
    BALLOT_STUFFER: "#8b4513",
    LEARNED: "#e377c2",
}


def trust_in(core: MeshCore) -> np.ndarray:
    """Per node: the fraction of its honest neighbours that find it coherent (nan if none)."""
    verdict = core.coherence_verdicts()
    judge = core.mask & (core.kind == HONEST)[:, None]
    votes = np.bincount(core.nbr[judge], weights=verdict[judge].astype(float), minlength=core.n_nodes)
    voters = np.bincount(core.nbr[judge], minlength=core.n_nodes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(voters > 0, votes / voters, np.nan)


def render_mesh(core: MeshCore, mesh: int, size_px: int = 480) -> np.ndarray:
    """RGB ``(size_px, size_px, 3)`` uint8 image of mesh ``mesh``."""
    m = core.meshes[mesh]
    off = int(core.node_offset[mesh])
    n = m.scenario.nodes
    pos = m.positions
    trust = trust_in(core)[off : off + n]
    traffic = core.traffic[off : off + n]
    fig, ax = plt.subplots(figsize=(size_px / 100, size_px / 100), dpi=100)
    peak = max(traffic.max(), 1.0)
    for u in range(n):
        for k in np.flatnonzero(core.mask[off + u]):
            v = int(core.nbr[off + u, k]) - off
            if u < v:
                load = traffic[u, k] + traffic[v][core.nbr[off + v] == off + u].sum()
                ax.plot(
                    *zip(pos[u], pos[v], strict=True),
                    color="#4e79a7",
                    alpha=0.25 + 0.6 * min(load / peak, 1),
                    linewidth=0.5 + 4 * min(load / peak, 1),
                    zorder=1,
                )
    for u in range(n):
        t = trust[u]
        border = "#bbbbbb" if np.isnan(t) else plt.cm.RdYlGn(t)
        colour = KIND_COLOURS.get(int(core.kind[off + u]), "#222222")  # the current role (nodes may turn)
        ax.scatter(*pos[u], s=140, color=colour, edgecolors=[border], linewidths=3, zorder=2)
    metrics = core.metrics()[mesh]
    ax.set_title(
        f"t={core.t}  delivery={metrics['delivery_rate']:.2f}  dishonest share={metrics['dishonest_share']:.2f}",
        fontsize=8,
    )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.05, 1.05)
    fig.tight_layout()
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return image
