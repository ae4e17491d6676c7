"""Benchmarks: ``python -m eval.bench {all,env,gas,vouchers,...} [--json OUT]``.

Each benchmark measures a figure *and* a reference in the same run, so results are
ratios that survive a noisy machine. Benchmarks are not tests: they assert nothing,
they report. Each subcommand lives in its own module ``eval.bench_<name>`` exposing
``run(args) -> dict`` and ``add_arguments(parser)``; this file only dispatches.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

#: subcommand -> (module, one-line description)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "env": ("eval.bench_env", "env agent-steps/s at 16/64/256 nodes and one 4,096-node mesh vs MPE simple_spread"),
    "gas": ("eval.bench_gas", "transaction gas of the channel contract on anvil, written to a report"),
    "vouchers": ("eval.bench_vouchers", "voucher signing/verification per second vs eth_account typed data"),
    "training": ("eval.bench_training", "agent-steps/s while PPO learns vs SB3 PPO on MPE simple_spread"),
    "decision": ("eval.bench_decision", "one numpy policy decision (8 neighbours) vs the same call in torch"),
    "node": ("eval.bench_node", "pieces/s one live node forwards on loopback with a voucher per piece"),
}


def _available() -> dict[str, tuple[str, str]]:
    return {name: spec for name, spec in BENCHMARKS.items() if importlib.util.find_spec(spec[0]) is not None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="name", required=True, metavar="BENCHMARK")
    all_parser = sub.add_parser("all", help="run every available benchmark")
    all_parser.add_argument("--json", type=Path, help="write all results to this JSON file")
    modules = {}
    for name, (module_name, help_text) in _available().items():
        module = importlib.import_module(module_name)
        modules[name] = module
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--json", type=Path, help="write the result to this JSON file")
        module.add_arguments(p)
    args = parser.parse_args(argv)

    if args.name == "all":
        results = {}
        for name, module in modules.items():
            sub_args = sub.choices[name].parse_args([])
            print(f"== {name}: {BENCHMARKS[name][1]}", flush=True)
            results[name] = module.run(sub_args)
    else:
        results = modules[args.name].run(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
