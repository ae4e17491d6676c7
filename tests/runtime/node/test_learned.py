"""The learned attacker on the live node (``runtime.node.learned``): observation, handling, announcements,
real node processes on loopback TCP, and the one-line errors of a bad ``attacker_policy``.

The attackers here are real exports (``policy.safetensors`` + ``manifest.json`` in the format of
``training.attack.export_attacker``, loaded by ``agents.attacker.load_attacker``) whose output biases
make one choice per component all but certain (a logit gap of 40: odds of e^-40).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agents.attacker import (
    ACTION_NVEC,
    ATTACKER_FEATURE_INDEX,
    ATTACKER_FEATURES,
    ATTACKER_FORMAT,
    ATTACKER_SPEC,
    CLAIM_FACTORS,
    DROP,
    FORWARD,
    HOLD,
    N_ATTACKER_FEATURES,
    QUOTE_FACTORS,
    ROUTE_DISCOUNTS,
    attacker_spec_hash,
    load_attacker,
)
from agents.economics import quote_price
from agents.export_files import MANIFEST, MAX_WEIGHTS_BYTES, WEIGHTS
from agents.features import LATENCY_SCALE, MAX_HOPS, SLOTS
from runtime.node.protocol import StreamSpec
from runtime.node.store import Store
from runtime.node.wire import Piece
from tests.runtime.node.fakes import line
from tests.runtime.node.procs import REPO, Cluster, address, free_ports


def write_attacker(
    directory: Path,
    handling: int | None = FORWARD,
    quote: float = 1.0,
    claim: float = 1.0,
    discount: float = 1.0,
    hidden: int = 8,
) -> Path:
    """An attacker export that (all but surely) plays ``handling`` (None: uniformly drawn), ``quote``,
    ``claim`` and ``discount``."""
    from safetensors.numpy import save_file

    directory.mkdir(parents=True, exist_ok=True)
    bias = np.zeros(sum(ACTION_NVEC), dtype=np.float32)
    offsets = np.concatenate([[0], np.cumsum(ACTION_NVEC)[:-1]])
    choices = (
        handling,
        QUOTE_FACTORS.index(quote),
        CLAIM_FACTORS.index(claim),
        ROUTE_DISCOUNTS.index(discount),
        None,  # what it says in gossip: the live node does not gossip yet
    )
    for off, choice in zip(offsets, choices, strict=True):
        if choice is not None:
            bias[off + choice] = 40.0
    tensors = {
        "policy_net.0.weight": np.zeros((hidden, N_ATTACKER_FEATURES), dtype=np.float32),
        "policy_net.0.bias": np.zeros(hidden, dtype=np.float32),
        "action_net.weight": np.zeros((sum(ACTION_NVEC), hidden), dtype=np.float32),
        "action_net.bias": bias,
    }
    save_file(tensors, str(directory / WEIGHTS))
    manifest = {
        "format": ATTACKER_FORMAT,
        "name": directory.name,
        "attacker_spec_hash": attacker_spec_hash(),
        "attacker_spec": ATTACKER_SPEC,
        "action_spec": {"type": "multi_discrete", "nvec": list(ACTION_NVEC)},
        "network": {"kind": "MLP (SB3 MlpPolicy actor)", "hidden": [hidden], "activation": "tanh"},
    }
    (directory / MANIFEST).write_text(json.dumps(manifest))
    return directory


def _through(tmp_path: Path, **export) -> tuple:
    """A line n0 - n1 - n2, n1 learned with the export, a stream n0 -> n2 for 2 s (fake clock)."""
    fab = line(3, learned={"n1": load_attacker(write_attacker(tmp_path / "attacker", **export))})
    src = fab.cores["n0"]
    src.s.streams = [StreamSpec(["n2"], rate=50.0)]
    src._next_emit, src._rr = [0.0], [0]
    src.start_streams(fab.now)
    fab.advance(2.0)
    src.emitting = False
    fab.advance(1.0)  # no new pieces: the last ones meet their deadlines, receipts and payments settle
    return fab, src.stats["generated"], fab.cores["n2"].stats["delivered"]


# ---------------------------------------------------------------------------- observation


def test_the_live_observation_has_agents_attackers_columns_from_the_nodes_own_state(tmp_path):
    fab = line(4, learned={"n1": load_attacker(write_attacker(tmp_path / "a"))})
    n1 = fab.cores["n1"]
    n1.allies = frozenset({"n2"})
    n1.chosen_rate, n1.earnings_rate, n1.drop_rate = 0.3, 0.2, 0.1
    n1.backlog = 5
    now = fab.now
    near = Piece(piece_id=7, src="n0", dst="n2", born=now, deadline=now + 0.3, value=1.2, size=1.0, hops=3)
    far = Piece(piece_id=8, src="n0", dst="n3", born=now, deadline=now + 2.0, value=0.6, size=1.0, hops=1)
    n1._value_sum, n1._value_n = 3.0, 3  # the pieces it was handed so far were worth 1.0 on average
    obs = n1.attacker_observation([near, far], now)
    assert obs.shape == (2, N_ATTACKER_FEATURES) and obs.dtype == np.float32
    col = {name: obs[:, ATTACKER_FEATURE_INDEX[name]] for name, _ in ATTACKER_FEATURES}
    step = n1.s.step_s
    link12 = n1.peers["n2"].link_steps
    quotes = sorted(p.quote_wei for p in n1.open_peers())
    expected = {
        "active": [1, 1],
        "own_queue": [5 / n1.s.queue_limit] * 2,
        "value": [1.2, 0.6],
        "time_left": [0.3 / step / LATENCY_SCALE, min(3.0, 2.0 / step / LATENCY_SCALE)],
        "hops": [3 / MAX_HOPS, 1 / MAX_HOPS],
        "dest_distance": [link12 / LATENCY_SCALE, (link12 + n1.peers["n2"].routes["n3"]) / LATENCY_SCALE],
        "dest_is_neighbour": [1, 0],
        "degree": [2 / SLOTS] * 2,
        "allies": [0.5] * 2,  # n2 of its two neighbours n0, n2
        "chosen_rate": [0.3] * 2,
        "earnings_rate": [0.2] * 2,
        "drop_rate": [0.1] * 2,
        "quote_ratio": [n1.announced_wei / (0.5 * (quotes[0] + quotes[1]))] * 2,
        "claim_factor": [1.0] * 2,
        "route_discount": [1.0] * 2,
        "capacity": [n1.s.capacity] * 2,
    }
    assert set(expected) == set(col)  # every column checked, by the name agents.attacker gives it
    for name, want in expected.items():
        np.testing.assert_allclose(col[name], want, rtol=1e-5, atol=1e-6, err_msg=name)
    assert 0.0 < col["dest_distance"][0] < col["dest_distance"][1]

    idle = n1.attacker_observation([], now)  # nothing to decide on: one inactive row, piece entries zero
    assert idle.shape == (1, N_ATTACKER_FEATURES)
    piece_cols = ("active", "value", "time_left", "hops", "dest_distance", "dest_is_neighbour")
    assert all(idle[0, ATTACKER_FEATURE_INDEX[c]] == 0.0 for c in piece_cols)
    assert idle[0, ATTACKER_FEATURE_INDEX["degree"]] == pytest.approx(2 / SLOTS)


# ---------------------------------------------------------------------------- handling and money


def test_a_learned_node_that_always_drops_loses_everything_and_earns_nothing_on_delivery(tmp_path):
    fab, generated, delivered = _through(tmp_path, handling=DROP)
    n1 = fab.cores["n1"]
    assert generated > 50 and delivered == 0
    # every piece it took is lost: by its attacker's choice, or (a few) past their deadline in its queue
    assert n1.stats["dropped"] == n1.stats["received"] > 50
    assert n1.stats["attacker_dropped"] == n1.stats["attacker_decisions"] >= 0.9 * n1.stats["received"]
    assert n1.stats["attacker_forwarded"] == 0 and n1.stats["forwarded"] == 0
    assert n1.stats["earned_wei"] == 0 and all(p.recv_paid == 0 for p in n1.peers.values())
    assert fab.cores["n0"].stats["paid_wei"] == 0
    assert n1.drop_rate > 0.99


def test_a_learned_node_that_forwards_delivers_and_is_paid(tmp_path):
    fab, generated, delivered = _through(tmp_path, handling=FORWARD)
    n1 = fab.cores["n1"]
    assert generated > 50 and delivered >= 0.8 * generated
    assert n1.stats["attacker_forwarded"] == n1.stats["attacker_decisions"] >= 0.9 * n1.stats["received"]
    assert n1.stats["attacker_dropped"] == 0
    assert n1.stats["earned_wei"] > 0 and n1.peers["n0"].recv_paid > 0
    assert n1.drop_rate == 0.0 and n1.chosen_rate > 0.0 and n1.earnings_rate > 0.0


def test_a_learned_node_that_always_holds_decides_again_each_step_until_the_deadline(tmp_path):
    fab, generated, delivered = _through(tmp_path, handling=HOLD)
    n1 = fab.cores["n1"]
    assert generated > 10 and delivered == 0
    # each piece was held, then decided on again every step, until its deadline passed
    assert n1.stats["attacker_held"] > 5 * n1.stats["received"] > 0
    assert n1.stats["attacker_dropped"] == 0 and n1.stats["dropped"] == n1.stats["received"]
    assert not n1._held and n1.backlog == 0


def test_the_attackers_announcements_reach_the_wire(tmp_path):
    fab, generated, delivered = _through(tmp_path, handling=FORWARD, quote=3.0, claim=1.5, discount=0.25)
    n0, n1 = fab.cores["n0"], fab.cores["n1"]
    assert n1._routes_msg("n0").dist["n2"] == pytest.approx(0.25 * n1.peers["n2"].link_steps)
    assert n1.hello().claimed_bw == pytest.approx(1.5 * n1.s.capacity)
    assert n0.memory.claimed_bw[0, n0.peers["n1"].slot] == pytest.approx(1.5 * n1.s.capacity)  # first hello
    fair_floor = n1._quote_wei(quote_price(n1.s.base_cost, 0.0, []))  # the formula's cost term
    assert n1.announced_wei >= 2.5 * fair_floor and n1.price_factor() == 3.0
    assert n0.peers["n1"].quote_wei == n1.announced_wei
    assert delivered >= 0.8 * generated and n0.stats["rejected"] == 0  # its charges were all accepted


def test_a_sampling_attacker_is_deterministic_given_the_nodes_seed(tmp_path):
    runs = [_through(tmp_path / str(k), handling=None) for k in range(2)]
    stats = [{k: v for k, v in fab.cores["n1"].stats.items() if k != "decision_seconds"} for fab, _, _ in runs]
    assert stats[0] == stats[1]
    s = stats[0]
    assert s["attacker_forwarded"] > 0 and s["attacker_dropped"] > 0 and s["attacker_held"] > 0


# ---------------------------------------------------------------------------- real processes


def _held(cluster: Cluster, node: str) -> int:
    store = Store(cluster.tmp / f"{node}.sqlite")
    try:
        return sum(v.cumulative for v in store.latest("received").values())
    finally:
        store.close()


def test_a_learned_node_process_drops_what_it_attracts_and_earns_nothing(cluster, tmp_path):
    """Diamond n0 - n1 - n3 / n0 - n2 - n3, stream n0 -> n3; n1 is learned, always drops, advertises
    quarter-length routes: it attracts pieces, loses them, is never paid, and n0 learns it."""
    export = write_attacker(tmp_path / "dropper", handling=DROP, discount=0.25)
    ports = free_ports(4)
    peer = lambda n, i: {"node_id": n, "port": ports[i], "address": address(i), "latency_ms": 5}  # noqa: E731
    cluster.config(
        "n0", 0, ports[0], [peer("n1", 1), peer("n2", 2)], streams=[{"subscribers": ["n3"], "rate": 40}],
        start_streams=True, directory={"n3": address(3)},
    )  # fmt: skip
    cluster.config(
        "n1", 1, ports[1], [peer("n0", 0), peer("n3", 3)], behaviour={"kind": "learned", "allies": ["n9"]},
        attacker_policy=str(export), policy="shortest",
    )  # fmt: skip
    cluster.config("n2", 2, ports[2], [peer("n0", 0), peer("n3", 3)])
    cluster.config("n3", 3, ports[3], [peer("n1", 1), peer("n2", 2)])
    for n in ("n0", "n1", "n2", "n3"):
        cluster.start(n)

    def attacked() -> bool:
        seen = cluster.stats("n0").get("peers", {}).get("n1", {})
        return (
            cluster.stats("n1").get("stats", {}).get("attacker_dropped", 0) > 20
            and seen.get("success_count", 0) > 10
            and seen.get("success", 1.0) < 0.2
        )

    cluster.wait_for(attacked, timeout=60, what="drops at the learned node, and n0 seeing them as losses")
    for n in ("n0", "n1", "n2", "n3"):
        assert cluster.terminate(n) == 0
    s1 = cluster.stats("n1")
    st = s1["stats"]
    assert s1["kind"] == "learned" and s1["torch_imported"] is False
    assert st["attacker_dropped"] == st["attacker_decisions"] == st["received"] > 10
    assert st["forwarded"] == 0 and st["earned_wei"] == 0 and _held(cluster, "n1") == 0
    assert s1["attacker"]["route_discount"] == 0.25 and s1["attacker"]["policy"] == "dropper"
    assert cluster.stats("n0")["stats"]["paid_wei"] == _held(cluster, "n2")  # n0 paid only for deliveries via n2
    ready = next(e for e in cluster.logs("n1") if e["event"] == "ready")
    assert ready["attacker_policy"] == str(export) and ready["torch_imported"] is False


# ---------------------------------------------------------------------------- one-line errors


def _node_error(tmp_path: Path, **cfg) -> str:
    path = tmp_path / "node.json"
    path.write_text(json.dumps({"node_id": "n0", "store": str(tmp_path / "n0.sqlite"), "policy": "seed", **cfg}))
    proc = subprocess.run(
        [sys.executable, "-m", "runtime.node", "--config", str(path)], cwd=REPO, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_a_bad_attacker_policy_is_a_one_line_error_at_the_nodes_start(tmp_path):
    learned = {"behaviour": {"kind": "learned"}}
    assert "config key 'attacker_policy'" in _node_error(tmp_path, **learned)
    missing = _node_error(tmp_path, **learned, attacker_policy=str(tmp_path / "nowhere"))
    assert "attacker policy" in missing and "no such directory" in missing
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / MANIFEST).write_text("{not json")
    assert "manifest.json is not valid JSON" in _node_error(tmp_path, **learned, attacker_policy=str(bad))
    assert "only for behaviour.kind learned" in _node_error(tmp_path, attacker_policy=str(bad))
    huge = tmp_path / "huge"  # a copy of a good export whose weights file is grown past the bound
    shutil.copytree(REPO / "checkpoints" / "attacker", huge)
    with open(huge / WEIGHTS, "r+b") as f:
        f.truncate(MAX_WEIGHTS_BYTES + 1)
    refused = _node_error(tmp_path, **learned, attacker_policy=str(huge))
    assert f"{WEIGHTS} is {MAX_WEIGHTS_BYTES + 1:,} bytes" in refused


def test_the_mesh_wants_a_loadable_attacker_policy_for_learned_nodes(tmp_path):
    export = write_attacker(tmp_path / "ok")
    hashless = write_attacker(tmp_path / "old")
    manifest = json.loads((hashless / MANIFEST).read_text())
    manifest["attacker_spec_hash"] = "0" * 64
    (hashless / MANIFEST).write_text(json.dumps(manifest))
    for args, needle in [
        (["--adversaries", "learned=1"], "--attacker-policy: required with --adversaries learned=1"),
        (["--adversaries", "learned=1", "--attacker-policy", str(tmp_path / "nowhere")], "no such directory"),
        (["--adversaries", "learned=1", "--attacker-policy", str(hashless)], "attacker-spec hash"),
        (["--adversaries", "blackhole=1", "--attacker-policy", str(export)], "places no learned node"),
    ]:
        proc = subprocess.run(
            [sys.executable, "-m", "runtime.mesh", *args, "--quiet"], cwd=REPO, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
        assert proc.returncode == 2, (args, proc.stderr)
        assert needle in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    helped = subprocess.run(
        [sys.executable, "-m", "runtime.mesh", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert "--attacker-policy DIR" in helped.stdout and "learned" in helped.stdout
