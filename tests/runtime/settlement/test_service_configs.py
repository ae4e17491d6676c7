"""Operator and aggregator configs: one-line errors, no inline keys, exit status 2 from the CLIs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runtime.configfile import ConfigError
from runtime.settlement.aggregator import load_aggregator_config
from runtime.settlement.operator import load_operator_config

REPO = Path(__file__).resolve().parents[3]
BASE = (
    "operator_id: op0\nrpc_url: http://127.0.0.1:8545\nchannels: '0x5FbDB2315678afecb367f032d93F642f64180aa3'\n"
    "avs: '0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512'\naggregator_url: http://127.0.0.1:9400\n"
)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ("key_env: OP_KEY\nprivate_key: '0x" + "11" * 32 + "'\n", "private keys are refused"),
        ("key_env: OP_KEY\nepoch_blocks: 0\n", "epoch_blocks"),
        ("", "exactly one of key_env or key_file"),
        ("key_env: OP_KEY\nfault: {kind: lazy}\n", "fault.kind"),
        ("key_env: OP_KEY\nhttp: {request_deadline_s: 0}\n", "http.request_deadline_s"),
        ("key_env: OP_KEY\nhttp: {threads: 9}\n", "threads"),
    ],
)
def test_operator_config_errors_are_one_line(tmp_path: Path, extra: str, needle: str) -> None:
    path = tmp_path / "op.yaml"
    path.write_text(BASE + extra)
    with pytest.raises(ConfigError) as err:
        load_operator_config(path)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_aggregator_config_rejects_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "agg.yaml"
    path.write_text("rpc_url: http://127.0.0.1:8545\navs: '0x00'\nkey_env: K\nquorum: 0.5\n")
    with pytest.raises(ConfigError, match="quorum"):
        load_aggregator_config(path)


def test_aggregator_config_takes_http_bounds(tmp_path: Path) -> None:
    path = tmp_path / "agg.yaml"
    path.write_text("rpc_url: http://127.0.0.1:8545\navs: '0x00'\nkey_env: K\nhttp: {max_connections_per_client: 2}\n")
    cfg = load_aggregator_config(path)
    assert cfg.http.max_connections_per_client == 2 and cfg.http.max_body_bytes == 4096


@pytest.mark.parametrize("module", ["runtime.operator", "runtime.aggregator"])
def test_cli_exits_2_with_one_line_on_a_bad_config(tmp_path: Path, module: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", module, "--config", str(tmp_path / "missing.yaml")],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: config") and "Traceback" not in proc.stderr
