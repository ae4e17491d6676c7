"""Each wire-level attacker of issue 11 as a real process against real honest node processes.

n0 -> n1 -> n2 forward a stream on loopback TCP (offline channels: vouchers signed, verified and
stored in sqlite), n0 also streams (slowly) to the attacker x, a neighbour of n1 running
``runtime.node.attackers`` with one ``behaviour.kind``. For every kind: the attack fails (n1
rejects it for the expected reason, or it changes nothing), n1 keeps serving n0 and n2, neither
n0 nor n2 ever has to reject n1, and nothing acknowledged is lost (each payee holds every voucher
its payer saw confirmed; n1 signed x no more than the charges it checked and accepted).
"""

from __future__ import annotations

import pytest

from runtime.node.store import Store
from tests.runtime.node.procs import Cluster, address, free_ports

#: what n1 must have refused from each attacker (None: the attack is absorbed without a refusal)
EXPECTED = {
    "vack_forger": "forged vack",
    "piece_bomber": "piece size",
    "route_poisoner": "unreachable routes",
    "handshake_flooder": "handshake evicted",
    "info_flooder": "duplicate channel info",
    "price_gouger": None,
    "id_reuser": "duplicate piece",
}


def stat(cluster: Cluster, node: str, key: str) -> float:
    return cluster.stats(node).get("stats", {}).get(key, 0)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def start(cluster: Cluster, kind: str, chain: dict | None = None, rate: float = 40.0) -> None:
    ports = free_ports(4)
    peer = lambda n, i, **kw: {"node_id": n, "port": ports[i], "address": address(i), "latency_ms": 5, **kw}  # noqa: E731
    streams = [{"subscribers": ["n2"], "rate": 30, "deadline_slack": 40},
               {"subscribers": ["x"], "rate": 4, "deadline_slack": 40}]  # fmt: skip
    extra = {"chain": chain} if chain else {}
    cluster.config("n0", 0, ports[0], [peer("n1", 1)], streams=streams, start_streams=True,
                   directory={"n2": address(2), "x": address(3)}, **extra)  # fmt: skip
    cluster.config("n1", 1, ports[1], [peer("n0", 0), peer("n2", 2), peer("x", 3, dial=False)],
                   behaviour={"idle_timeout_s": 3.0}, **extra)  # fmt: skip
    cluster.config("n2", 2, ports[2], [peer("n1", 1)], **extra)
    cluster.config("x", 3, ports[3], [peer("n1", 1, dial=True)], start_streams=True,
                   behaviour={"kind": kind, "attack_rate": rate}, **extra)  # fmt: skip
    for n in ("n0", "n1", "n2", "x"):
        cluster.start(n)
    cluster.wait_for(lambda: stat(cluster, "n2", "delivered") > 5, what="first deliveries")


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_the_attack_fails_and_the_honest_node_keeps_serving_everyone_else(cluster, kind):
    start(cluster, kind)
    rss0 = rss_kib(cluster.procs["n1"].pid)
    frames = 4 if kind == "price_gouger" else 60  # a gouger sends a quote frame per change (two per cycle)
    cluster.wait_for(lambda: stat(cluster, "x", "attack_frames") >= frames, what=f"{kind} attacking")
    reason = EXPECTED[kind]
    if reason is not None:
        cluster.wait_for(lambda: cluster.stats("n1").get("rejections", {}).get(reason, 0) > 0, what=f"'{reason}'")
    if kind == "handshake_flooder":  # an honest neighbour still gets in while the flood goes on
        cluster.kill9("n0")
        (cluster.tmp / "n0.stats.json").unlink()  # what the new n0 reports, not what the killed one left
        cluster.start("n0")
        connected = lambda a, b: cluster.stats(a).get("peers", {}).get(b, {}).get("connected")  # noqa: E731
        cluster.wait_for(lambda: connected("n0", "n1") and connected("n1", "n0"), what="n0 back in during the flood")
    before = stat(cluster, "n2", "delivered")
    cluster.wait_for(lambda: stat(cluster, "n2", "delivered") > before + 10, what="n1 to keep serving")
    assert cluster.procs["n1"].poll() is None
    n1 = cluster.stats("n1")
    assert n1["peers"]["n0"]["connected"] and n1["peers"]["n2"]["connected"]
    for honest in ("n0", "n2"):  # nothing n1 sent had to be rejected (no route poisoning, no bad frame)
        assert "n1" not in cluster.stats(honest).get("rejections_by_peer", {}), cluster.stats(honest)
    assert "unsendable" not in n1.get("rejections", {})
    x_at_n1 = n1["peers"]["x"]
    assert x_at_n1["pay_cumulative"] <= x_at_n1["accepted_wei"]  # paid only checked, accepted charges
    if kind == "price_gouger":
        assert n1["quote_wei"] < 3 * cluster.stats("n2")["quote_wei"]  # its quote did not follow x's
    if kind in ("info_flooder", "handshake_flooder"):
        assert rss_kib(cluster.procs["n1"].pid) - rss0 < 64 * 1024
        assert len(cluster.logs("n1")) < 2000  # thousands of frames, not thousands of log lines
    for n in ("x", "n0", "n2", "n1"):
        assert cluster.terminate(n) == 0
    # nothing acknowledged is lost: each payee holds what its payer saw confirmed, all of it signed
    held1 = Store(cluster.tmp / "n1.sqlite").latest("received")
    sent0 = Store(cluster.tmp / "n0.sqlite").latest("sent")
    sent1 = Store(cluster.tmp / "n1.sqlite").latest("sent")
    final0 = cluster.stats("n0")["peers"]["n1"]
    cid = final0["pay_channel"]
    assert held1[cid].cumulative >= final0["pay_acked"] and held1[cid].cumulative <= sent0[cid].cumulative
    x_cid = cluster.stats("n1")["peers"]["x"]["pay_channel"]
    if x_cid in sent1:
        assert sent1[x_cid].cumulative <= cluster.stats("n1")["peers"]["x"]["accepted_wei"]


@pytest.mark.chain
def test_a_vack_forger_on_a_real_chain_claims_only_what_it_served(cluster, chain):
    """The demonstrated drain, on anvil: x forges vacks for nearly the whole deposit of n1's channel
    to it; n1 refuses them, and on chain x claims exactly the charges n1 checked and accepted."""
    rpc_url, client = chain
    deposit = 10**17
    start(cluster, "vack_forger", {"rpc_url": rpc_url, "chain_id": 31337, "contract": client.address,
                                   "deposit_wei": deposit, "claim_interval_s": 1000.0}, rate=1.0)  # fmt: skip
    cluster.wait_for(lambda: cluster.stats("n1").get("rejections", {}).get("forged vack", 0) >= 3, what="forgeries")
    cluster.wait_for(lambda: cluster.stats("n1")["peers"]["x"]["accepted_wei"] > 0, timeout=40, what="x paid")
    for n in ("x", "n0", "n2", "n1"):
        assert cluster.terminate(n) == 0
    x_at_n1 = cluster.stats("n1")["peers"]["x"]
    st = client.channel(x_at_n1["pay_channel"])
    assert st.payee.lower() == address(3).lower()
    assert 0 < st.claimed <= x_at_n1["accepted_wei"] < deposit // 100  # nowhere near the forged amount
    assert st.claimed == Store(cluster.tmp / "x.sqlite").latest("received")[x_at_n1["pay_channel"]].cumulative


def test_mesh_help_lists_every_attacker_kind_and_the_report_attributes_them():
    import subprocess
    import sys

    from runtime.node.attackers import ATTACK_KINDS
    from runtime.node.mesh import WIRE_ATTACK_KINDS, attack_report, parse_adversaries
    from tests.runtime.node.procs import REPO

    assert WIRE_ATTACK_KINDS == ATTACK_KINDS
    out = subprocess.run([sys.executable, "-m", "runtime.mesh", "--help"], cwd=REPO, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0 and all(k in " ".join(out.stdout.split()) for k in ATTACK_KINDS)
    assert parse_adversaries("vack_forger=1,price_gouger=2")["price_gouger"] == 2
    ids, kinds = ["a", "b", "x"], ["honest", "honest", "vack_forger"]
    addrs = ["0xaa", "0xbb", "0xcc"]
    snaps = {
        "a": {"generated_to": {"b": 10, "x": 5}, "delivered_from": {},
              "peers": {"x": {"accepted_wei": 70}}, "rejections_by_peer": {"x": {"forged vack": 3}}},
        "b": {"generated_to": {}, "delivered_from": {"a": 9, "x": 4}, "peers": {}},
        "x": {"stats": {"attack_frames": 40}, "peers": {}},
    }  # fmt: skip
    r = attack_report(snaps, ids, kinds, addrs, {("0xaa", "0xcc"): 70, ("0xbb", "0xcc"): 5}, {"a": 0, "b": 0, "x": 0})
    assert r["honest_delivery_rate"] == 0.9 and r["honest_alive"] is True  # pairs with x left out
    a = r["attacks"]["vack_forger"]
    assert (a["frames_sent"], a["rejected"], a["rejected_reasons"]) == (40, 3, {"forged vack": 3})
    # only honest neighbours' payments count as earned (b is no neighbour of x)
    assert a["attacker_earned_wei"] == 70 == a["attacker_served_wei"] and a["earned_within_served"]
