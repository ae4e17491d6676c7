"""Real node processes on loopback TCP (offline chain): startup, forwarding, rejections, CLI errors."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time

import pytest

from runtime.chain.anvil import DEV_PRIVATE_KEYS
from runtime.chain.vouchers import VoucherSigner, sign_digest
from runtime.node.wire import Auth, ChannelInfo, FrameDecoder, Hello, Voucher, VoucherAck, auth_digest, encode
from tests.runtime.node.procs import REPO, Cluster, address, free_ports

OFFLINE_CONTRACT = "0x0000000000000000000000000000000000000001"
DEPOSIT = 10**17


def line3(cluster: Cluster, with_attacker: bool = False) -> list[int]:
    """n0 -> n1 -> n2 with a stream n0 -> n2; n1 also lists peer x (key 3) when asked."""
    ports = free_ports(3)
    peer = lambda n, i: {"node_id": n, "port": ports[i], "address": address(i), "latency_ms": 5}  # noqa: E731
    x = [{"node_id": "x", "port": 1, "address": address(3), "latency_ms": 0, "dial": False}] if with_attacker else []
    cluster.config(
        "n0", 0, ports[0], [peer("n1", 1)], streams=[{"subscribers": ["n2"], "rate": 40}], start_streams=True,
        directory={"n2": address(2)},
    )  # fmt: skip
    cluster.config("n1", 1, ports[1], [peer("n0", 0), peer("n2", 2), *x],
                   behaviour={"max_frame": 4096, "unpaid_limit_wei": 10**14, "idle_timeout_s": 2.0})  # fmt: skip
    cluster.config("n2", 2, ports[2], [peer("n1", 1)])
    for n in ("n0", "n1", "n2"):
        cluster.start(n)
    cluster.wait_for(lambda: cluster.stats("n2").get("stats", {}).get("delivered", 0) > 5, what="first deliveries")
    return ports


def delivered(cluster: Cluster) -> int:
    return cluster.stats("n2").get("stats", {}).get("delivered", 0)


@pytest.mark.parametrize("policy", ["seed", "checkpoints/default"])
def test_node_starts_without_torch_and_reports_its_startup(cluster, tmp_path, policy):
    if policy != "seed" and not (REPO / policy / "manifest.json").exists():
        pytest.skip(f"{policy} is not exported yet")
    port, metrics = free_ports(2)
    cluster.config("solo", 0, port, [], metrics_port=metrics, policy=policy)
    cluster.start("solo")
    cluster.wait_for(lambda: any(e["event"] == "ready" for e in cluster.logs("solo")), what="ready")
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as r:
        text = r.read().decode()
    for name in ("openstreaming_pieces_forwarded_total", "openstreaming_pieces_delivered_total",
                 "openstreaming_vouchers_received_total", "openstreaming_decision_seconds_count"):  # fmt: skip
        assert name in text
    ready = next(e for e in cluster.logs("solo") if e["event"] == "ready")
    assert ready["torch_imported"] is False and ready["port"] == port and ready["policy"] == policy
    assert ready["startup_s"] > 0
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:  # accepting peers
        s.settimeout(5)
        msgs = FrameDecoder().feed(s.recv(4096))
    assert isinstance(msgs[0], Hello) and msgs[0].node_id == "solo"
    assert cluster.terminate("solo") == 0
    assert any(e["event"] == "stopped" for e in cluster.logs("solo"))


def test_pieces_flow_through_processes_and_every_voucher_is_stored(cluster):
    line3(cluster)
    before = delivered(cluster)
    cluster.wait_for(lambda: delivered(cluster) > before + 20, what="more deliveries")
    for n in ("n0", "n1", "n2"):
        assert cluster.terminate(n) == 0
    from runtime.node.store import Store

    s1 = Store(cluster.tmp / "n1.sqlite")
    s0 = Store(cluster.tmp / "n0.sqlite")
    got = s1.latest("received")
    sent = s0.latest("sent")
    assert got and set(got) <= set(sent)
    for cid, v in got.items():
        assert v.cumulative <= sent[cid].cumulative  # the payee holds at most what was signed
        signer = VoucherSigner(DEV_PRIVATE_KEYS[0], 31337, OFFLINE_CONTRACT)
        assert signer.sign(cid, v.cumulative) == v.signature
    final = cluster.stats("n1")
    assert final["final"] is True and final["stats"]["vouchers_received"] >= len(got)


class Attacker:
    """A hand-driven peer 'x' of n1 speaking the wire protocol over a real socket."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.dec = FrameDecoder()
        self.signer = VoucherSigner(DEV_PRIVATE_KEYS[3], 31337, OFFLINE_CONTRACT)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def hello(self, key: str = DEV_PRIVATE_KEYS[3]) -> None:
        """Hello as peer x, then prove it (or, with another key, fail to) with an auth frame."""
        self.send(
            encode(
                Hello(
                    version=1, node_id="x", address=self.signer.address, claimed_bw=1.0, quote_wei=10, nonce=b"x" * 16
                )
            )
        )
        theirs = self.until(Hello)
        assert theirs is not None
        self.send(encode(Auth(sign_digest(key, auth_digest(theirs.nonce, "x", self.signer.address)))))

    def until(self, kind, timeout: float = 5.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            data = self.sock.recv(65536)
            if not data:
                return None
            for m in self.dec.feed(data):
                if isinstance(m, kind):
                    return m
        return None

    def channel(self, cid: int = 77) -> int:
        self.hello()
        self.send(encode(ChannelInfo(cid)))
        ack = self.until(VoucherAck)
        assert ack is not None and ack.channel_id == cid
        return cid

    def closed(self) -> bool:
        """Whether the node closes this connection within 8 s."""
        self.sock.settimeout(8)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
        except TimeoutError:
            return False
        except (ConnectionResetError, OSError):
            return True

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize(
    ("name", "attack", "reason"),
    [
        ("impostor", "impostor", "bad hello signature"),
        ("silent", lambda a: None, "read timeout"),
        ("malformed", lambda a: a.send(struct.pack(">I", 3) + b"\x93\x01\x02"), "malformed frame"),
        ("oversized", lambda a: a.send(struct.pack(">I", 10**6)), "frame of 1000000 bytes"),
        ("replayed", "replay", "replayed voucher"),
        ("other channel", "other", "voucher for another channel"),
        ("above deposit", "above", "voucher above deposit"),
        ("bad signature", "badsig", "bad signature"),
    ],
)
def test_rejections_close_only_the_offender_and_forwarding_continues(cluster, name, attack, reason):
    ports = line3(cluster, with_attacker=True)
    a = Attacker(ports[1])
    try:
        if callable(attack):
            a.hello()
            attack(a)
        elif attack == "impostor":
            a.hello(key="0x" + "05" * 32)  # claims to be x, cannot sign as x
        else:
            cid = a.channel()
            if attack == "replay":
                v = encode(Voucher(cid, 1000, a.signer.sign(cid, 1000)))
                a.send(v)
                assert a.until(VoucherAck) is not None
                a.send(v)
            elif attack == "other":
                a.send(encode(Voucher(cid + 1, 1000, a.signer.sign(cid + 1, 1000))))
            elif attack == "above":
                a.send(encode(Voucher(cid, DEPOSIT + 1, a.signer.sign(cid, DEPOSIT + 1))))
            else:
                stranger = VoucherSigner(b"\x05" * 32, 31337, OFFLINE_CONTRACT)
                a.send(encode(Voucher(cid, 1000, stranger.sign(cid, 1000))))
        assert a.closed()
    finally:
        a.close()
    cluster.wait_for(lambda: any(r.startswith(reason) for r in cluster.reasons("n1")), what=f"'{reason}' logged")
    before = delivered(cluster)
    cluster.wait_for(lambda: delivered(cluster) > before + 10, what="forwarding to continue")
    assert cluster.procs["n1"].poll() is None


def test_flood_of_hellos_is_refused_while_forwarding_continues(cluster):
    ports = line3(cluster)
    socks = []
    try:
        for i in range(60):
            s = socket.create_connection(("127.0.0.1", ports[1]), timeout=5)
            socks.append(s)
            if i % 3 == 0:
                hello = Hello(
                    version=1,
                    node_id=f"flood{i}",
                    address="0x" + "9" * 40,
                    claimed_bw=1.0,
                    quote_wei=1,
                    nonce=bytes(16),
                )
                s.sendall(encode(hello))
        cluster.wait_for(
            lambda: sum(r.startswith("unknown peer") for r in cluster.reasons("n1")) >= 1,
            what="unknown-peer rejections",
        )
        cluster.wait_for(
            lambda: any(r.startswith("handshake evicted") for r in cluster.reasons("n1")), what="flood cap"
        )
        before = delivered(cluster)
        cluster.wait_for(lambda: delivered(cluster) > before + 10, what="forwarding to continue")
        cluster.wait_for(lambda: any(r.startswith("hello timeout") for r in cluster.reasons("n1")), what="timeouts")
    finally:
        for s in socks:
            s.close()


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "runtime.node", *args], cwd=REPO, capture_output=True, text=True, timeout=60, env=env
    )


def test_cli_help_and_one_line_errors(tmp_path):
    out = run_cli("--help")
    assert out.returncode == 0 and "--config" in out.stdout and "--policy" in out.stdout
    bad = tmp_path / "bad.json"
    mismatched = tmp_path / "export"  # an export whose observation-spec hash is not ours
    mismatched.mkdir()
    (mismatched / "manifest.json").write_text(
        json.dumps({"format": "openstreaming-policy/1", "obs_spec_hash": "0" * 64})
    )
    (mismatched / "policy.safetensors").write_bytes(b"")
    for cfg, needle in [
        ({"node_id": "a", "behaviour": {"kind": "saint"}}, "unknown kind"),
        ({"node_id": "a", "private_key": "0x" + "11" * 32}, "private keys are refused"),
        ({"node_id": "a", "chain": {"contract": "0x" + "ab" * 32}}, "looks like a private key"),
        ({"node_id": "a", "peers": [{"node_id": "a"}]}, "duplicate peer ids"),
        ({"node_id": "a", "policy": "no-such-policy"}, "unknown policy"),
        ({"node_id": "a", "listen": {"port": 70000}}, "listen.port"),
        ({"node_id": "a", "key_env": "OPENSTREAMING_TEST_UNSET_KEY"}, "is not set"),
        ({"node_id": "a", "policy": "oracle"}, "privileged"),
        ({"node_id": "a", "policy": str(mismatched)}, "policy"),
    ]:
        bad.write_text(json.dumps(cfg))
        out = run_cli("--config", str(bad))
        assert out.returncode == 2, (cfg, out.stderr)
        assert needle in out.stderr and "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    from runtime.node.store import Store

    other = Store(tmp_path / "other.sqlite")
    other.set_meta("deployment", "31337:0xfeed:0xabc")
    other.close()
    bad.write_text(json.dumps({"node_id": "a", "store": str(tmp_path / "other.sqlite")}))
    out = run_cli("--config", str(bad))
    assert out.returncode == 2 and "belongs to another deployment" in out.stderr and "Traceback" not in out.stderr
    keyfile = tmp_path / "key"
    keyfile.write_text(DEV_PRIVATE_KEYS[0])
    keyfile.chmod(0o644)
    bad.write_text(json.dumps({"node_id": "a", "key_file": str(keyfile)}))
    out = run_cli("--config", str(bad))
    assert out.returncode == 2 and "readable by others" in out.stderr
    assert DEV_PRIVATE_KEYS[0][2:] not in out.stderr
