"""Node configuration: strict validation, one-line errors, key sources."""

from __future__ import annotations

import pytest

from runtime.chain.anvil import DEV_PRIVATE_KEYS
from runtime.node.config import ConfigError, load_config, read_key


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
