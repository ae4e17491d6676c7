"""Node configuration: strict validation, one-line errors, key sources."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from runtime.chain.anvil import DEV_PRIVATE_KEYS
from runtime.configfile import MAX_CONFIG_BYTES, MAX_KEY_FILE_BYTES
from runtime.node.config import ConfigError, load_config, read_key
from tests.runtime.node.procs import REPO


def write(tmp_path, text: str):
    path = tmp_path / "node.yaml"
    path.write_text(text)
    return path


def test_yaml_config_loads_with_defaults(tmp_path):
    cfg = load_config(
        write(
            tmp_path,
            "node_id: n0\nlisten: {port: 9100}\npeers:\n  - {node_id: n1, port: 9101, latency_ms: 20}\n"
            "streams: [{subscribers: [n1], rate: 5}]\n",
        )
    )
    assert cfg.node_id == "n0" and cfg.listen.port == 9100 and cfg.peers[0].latency_ms == 20
    assert cfg.policy == "checkpoints/default" and cfg.chain.rpc_url is None and cfg.chain.challenge_period_s >= 3600
    assert cfg.payment == "on_delivery" and cfg.directory == {}  # paid on the destination's receipt by default


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("node_id: n0\nbogus: 1\n", "bogus"),
        ("node_id: n0\nchain: {challenge_period_s: 60}\n", "chain.challenge_period_s"),
        ("node_id: n0\nbehaviour: {queue_limit: 0}\n", "behaviour.queue_limit"),
        ("- just a list\n", "mapping"),
        ("node_id: [unclosed\n", "YAML"),
        (f"node_id: n0\nkey: {DEV_PRIVATE_KEYS[0]}\n", "private keys are refused"),
        ("node_id: n0\nbehaviour: {price_ceiling: 0.5}\n", "behaviour.price_ceiling"),
        ("node_id: n0\nbehaviour: {min_piece_size: 2, max_piece_size: 1}\n", "behaviour.min_piece_size"),
        ("node_id: n0\nbehaviour: {kind: vack_forgerr}\n", "vack_forger"),
        ("node_id: n0\npayment: sometimes\n", "config key 'payment'"),
        ("node_id: n0\ndirectory: {n3: '0x12'}\n", "directory.n3"),
    ],
)
def test_config_errors_are_one_line_and_name_the_key(tmp_path, text, needle):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert DEV_PRIVATE_KEYS[0][2:] not in str(err.value)


def test_key_sources(tmp_path, monkeypatch):
    key_file = tmp_path / "key"
    key_file.write_text(DEV_PRIVATE_KEYS[1][2:] + "\n")
    key_file.chmod(0o600)
    cfg = load_config(write(tmp_path, f"node_id: n0\nkey_file: {key_file}\n"))
    assert read_key(cfg) == DEV_PRIVATE_KEYS[1]
    monkeypatch.setenv("OS_TEST_KEY", DEV_PRIVATE_KEYS[2])
    cfg = load_config(write(tmp_path, "node_id: n0\nkey_env: OS_TEST_KEY\n"))
    assert read_key(cfg) == DEV_PRIVATE_KEYS[2]
    monkeypatch.setenv("OS_TEST_KEY", "not-a-key")
    with pytest.raises(ConfigError, match="not a 32-byte hex private key") as err:
        read_key(cfg)
    assert "not-a-key" not in str(err.value)
    with pytest.raises(ConfigError, match="not both"):
        load_config(write(tmp_path, f"node_id: n0\nkey_env: X\nkey_file: {key_file}\n"))
    assert read_key(load_config(write(tmp_path, "node_id: n0\n"))) is None


def test_hardening_knobs_reach_the_node_settings(tmp_path):
    text = "node_id: n0\nbehaviour: {kind: price_gouger, price_ceiling: 5, max_pending_per_source: 2, "
    cfg = load_config(write(tmp_path, text + "hello_timeout_s: 0.5, max_piece_size: 2}\n"))
    b = cfg.behaviour
    assert (b.kind, b.price_ceiling, b.max_pending_per_source, b.hello_timeout_s, b.max_piece_size) == (
        "price_gouger", 5.0, 2, 0.5, 2.0)  # fmt: skip


def _hostile_file(tmp_path, how: str, limit: int):
    path = tmp_path / f"hostile_{how}"
    if how == "binary":
        path.write_bytes(b"node_id: n0\n\xff\xfe\x00")
    elif how == "fifo":
        os.mkfifo(path)  # reading it would wait for a writer forever
    elif how == "directory":
        path.mkdir()
    elif how == "huge":
        with open(path, "wb") as f:
            f.write(b"node_id: n0\n")
            f.truncate(limit + 1)  # sparse: no disk, but a reader that trusted it would take it all
    return path


HOSTILE = [("binary", "not UTF-8 text"), ("fifo", "not a regular file"), ("directory", "not a regular file"),
           ("huge", "larger than")]  # fmt: skip


@pytest.mark.parametrize(("how", "needle"), HOSTILE)
def test_a_config_that_is_not_a_small_text_file_is_refused_in_one_line(tmp_path, how, needle):
    with pytest.raises(ConfigError, match=needle) as err:
        load_config(_hostile_file(tmp_path, how, MAX_CONFIG_BYTES))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("how", "needle"), HOSTILE)
def test_a_key_file_that_is_not_a_small_text_file_is_refused_in_one_line(tmp_path, how, needle):
    key_file = _hostile_file(tmp_path, how, MAX_KEY_FILE_BYTES)
    key_file.chmod(0o700 if how == "directory" else 0o600)
    with pytest.raises(ConfigError, match=needle):
        read_key(load_config(write(tmp_path, f"node_id: n0\nkey_file: {key_file}\n")))


@pytest.mark.parametrize("how", ["binary", "fifo"])
def test_the_node_process_refuses_a_hostile_config_file_at_once(tmp_path, how):
    """A real ``runtime.node``: exit 2 with one line, neither a traceback nor a read that never ends."""
    path = _hostile_file(tmp_path, how, MAX_CONFIG_BYTES)
    proc = subprocess.run([sys.executable, "-m", "runtime.node", "--config", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
