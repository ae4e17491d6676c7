"""The settlement service beside a mesh: deploy ``SettlementAVS``, bond operators, run them.

Used by ``python -m runtime.mesh --operators K [--faulty-operator MODE]``, the way EigenLayer's
incredible-squaring example runs operators, an aggregator and a challenger beside anvil:

* deploys ``SettlementAVS``, funds ``K`` operator accounts and has each bond ``stake_wei``;
* starts one aggregator process (which also runs the challenger, with its own reporter account)
  and ``K`` operator processes (``python -m runtime.operator``), keys passed by environment;
* optionally makes the last operator faulty at one epoch (``equivocate`` or ``wrong-root``);
* after the run, reads the chain to report: epochs finalised, whether every finalised root equals
  a root recomputed independently from the channel contract's events, slashed operators and wei,
  the reporter's reward, and whether the honest operators kept their bonds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from eth_account import Account
from web3 import Web3

from runtime.chain.anvil import REPO_ROOT
from runtime.chain.client import SettlementAVSClient
from runtime.settlement.operator import ClaimReader
from runtime.settlement.roots import settlement_root

FAULT_MODES = ("equivocate", "wrong-root")


def _send_value(w3: Web3, funder: str, to: str, value: int) -> None:
    acct = Account.from_key(funder)
    tx = {
        "to": to,
        "value": value,
        "gas": 21000,
        "gasPrice": w3.eth.gas_price,
        "nonce": w3.eth.get_transaction_count(acct.address, "pending"),
        "chainId": w3.eth.chain_id,
    }
    w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(acct.sign_transaction(tx).raw_transaction))


@dataclass
class SettlementService:
    """Operators, aggregator and challenger for one mesh run (see the module docstring)."""

    w3: Web3
    rpc_url: str
    channels_address: str
    funder_key: str
    workdir: Path
    operator_keys: list[str]
    reporter_key: str
    epoch_blocks: int = 5
    stake_wei: int = 10**18
    faulty: str | None = None
    fault_epoch_offset: int = 2
    attest_flows: bool = True  # False with net settlement: the net root is the epoch's attested record
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    avs: SettlementAVSClient | None = None
    first_epoch: int = 0
    aggregator_port: int = 0
    ready_block: int = 0  # block at which the aggregator and every operator were listening
    proof_ports: list[int] = field(default_factory=list)
    _spawn_args: dict[str, tuple[str, dict]] = field(default_factory=dict, repr=False)

    @property
    def fault_epoch(self) -> int:
        return self.first_epoch + self.fault_epoch_offset

    def proof_urls(self) -> list[str]:
        """Operators' proof servers, for the nodes' flow checks."""
        return [f"http://127.0.0.1:{p}" for p in self.proof_ports]

    def start(self, free_ports) -> SettlementService:
        """Deploy, bond, and start the aggregator and the operators. ``free_ports(n)`` gives ports."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.avs = SettlementAVSClient.deploy(self.w3, self.funder_key, epoch_blocks=self.epoch_blocks)
        for key in [*self.operator_keys, self.reporter_key]:
            _send_value(self.w3, self.funder_key, Account.from_key(key).address, self.stake_wei + 10**17)
        for key in self.operator_keys:
            self.avs.as_account(key).register(self.stake_wei)
        ports = free_ports(1 + len(self.operator_keys))
        self.aggregator_port, self.proof_ports = ports[0], ports[1:]
        self.first_epoch = self.w3.eth.block_number // self.epoch_blocks + 1
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("OPENSTREAMING_")}
        agg_cfg = {
            "rpc_url": self.rpc_url,
            "avs": self.avs.address,
            "key_env": "OPENSTREAMING_AGGREGATOR_KEY",
            "challenger_key_env": "OPENSTREAMING_REPORTER_KEY",
            "listen": {"host": "127.0.0.1", "port": self.aggregator_port},
            "state_file": str(self.workdir / "aggregator.state.json"),
        }
        self._spawn(
            "aggregator",
            "runtime.settlement.aggregator",
            agg_cfg,
            {
                **base_env,
                "OPENSTREAMING_AGGREGATOR_KEY": self.funder_key,
                "OPENSTREAMING_REPORTER_KEY": self.reporter_key,
            },
        )
        self._wait_port(self.aggregator_port)
        for i, key in enumerate(self.operator_keys):
            faulty = self.faulty is not None and i == len(self.operator_keys) - 1
            cfg = {
                "operator_id": f"op{i}",
                "rpc_url": self.rpc_url,
                "channels": self.channels_address,
                "avs": self.avs.address,
                "key_env": "OPENSTREAMING_OPERATOR_KEY",
                "aggregator_url": f"http://127.0.0.1:{self.aggregator_port}",
                "store": str(self.workdir / f"op{i}.sqlite"),
                "serve": {"host": "127.0.0.1", "port": self.proof_ports[i]},
                "epoch_blocks": self.epoch_blocks,
                "first_epoch": self.first_epoch,
                "fault": {"kind": self.faulty, "epoch": self.fault_epoch} if faulty else {"kind": "none"},
                "attest_flows": self.attest_flows,
            }
            self._spawn(f"op{i}", "runtime.settlement.operator", cfg, {**base_env, "OPENSTREAMING_OPERATOR_KEY": key})
        for port in self.proof_ports:
            self._wait_port(port)
        # On a loaded machine the processes can come up epochs after first_epoch; they then work
        # through the backlog. Latencies are measured from here, when the whole service is running.
        self.ready_block = self.w3.eth.block_number
        return self

    def _spawn(self, name: str, module: str, cfg: dict, env: dict) -> None:
        path = self.workdir / f"{name}.json"
        path.write_text(json.dumps(cfg, indent=1))
        self._spawn_args[name] = (module, env)
        self._start_process(name)

    def _start_process(self, name: str) -> None:
        module, env = self._spawn_args[name]
        path = self.workdir / f"{name}.json"
        with open(self.workdir / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", module, "--config", str(path)],
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def _wait_port(self, port: int, timeout: float = 60.0) -> None:
        import socket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"settlement service did not open port {port} (see {self.workdir})")

    def kill_and_restart(self, name: str) -> None:
        """``kill -9`` a process of the service (e.g. ``op0``) and start it again with its config."""
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self._start_process(name)

    def head_epoch(self) -> int:
        return self.w3.eth.block_number // self.epoch_blocks

    def wait_settled(self, timeout: float = 30.0) -> None:
        """Wait until every epoch that ended a block ago is finalised (or ``timeout``)."""
        assert self.avs is not None
        if not self.attest_flows:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = self.head_epoch() - 1
            if last < self.first_epoch or all(
                self.avs.finalized_root(e) != bytes(32) for e in range(self.first_epoch, last)
            ):
                return
            time.sleep(0.5)

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def report(self) -> dict:
        """What the chain says about the service's run (see the module docstring)."""
        assert self.avs is not None
        last = self.head_epoch() - 1
        reader = ClaimReader(self.w3, self.channels_address)
        payments = reader.payments(self.first_epoch * self.epoch_blocks, self.w3.eth.block_number)
        finalised, matches = [], []
        for epoch in range(self.first_epoch, last + 1):
            root = self.avs.finalized_root(epoch)
            if root == bytes(32):
                continue
            finalised.append(epoch)
            matches.append(root == settlement_root(payments, epoch, self.epoch_blocks)[0])
        events = self.avs.contract.events.OperatorSlashedForEquivocation.get_logs(from_block=0)
        slashed = sorted({ev["args"]["operator"] for ev in events})
        operators = [Account.from_key(k).address for k in self.operator_keys]
        honest = [a for a in operators if a not in slashed]
        return {
            "operators": len(operators),
            "faulty_operator": self.faulty,
            "fault_epoch": self.fault_epoch if self.faulty else None,
            "epochs_observed": max(0, last - self.first_epoch + 1),
            "epochs_finalised": len(finalised),
            "finalised_epochs": finalised,
            # None with net settlement: no flow roots are attested (the net root is the record)
            "roots_match_recomputed": (bool(matches) and all(matches)) if self.attest_flows else None,
            "slashed_operators": slashed,
            "slashed_wei": sum(int(ev["args"]["amount"]) for ev in events),
            "reporter_reward_wei": sum(int(ev["args"]["reward"]) for ev in events),
            # blocks from the end of the offending epoch (or from when the service was up, if later) to
            # the slash, in epochs
            "slashed_within_epochs": max(
                (
                    (ev["blockNumber"] - max((int(ev["args"]["epoch"]) + 1) * self.epoch_blocks, self.ready_block))
                    / self.epoch_blocks
                    for ev in events
                ),
                default=None,
            ),
            "honest_operators_kept_bond": all(self.avs.stake_of(a) == self.stake_wei for a in honest),
            "fault_epoch_finalised": (self.avs.finalized_root(self.fault_epoch) != bytes(32) if self.faulty else None),
        }
