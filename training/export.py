"""Export a trained scorer for torch-free inference: ``policy.safetensors`` + ``manifest.json``.

``python -m training.export CHECKPOINT.zip OUT_DIR [--episodes N]`` exports an SB3 checkpoint
(optionally evaluating it against ``seed`` first, for the manifest's summary). The training
entry point calls :func:`export_policy` itself at the end of a run.

The manifest holds: ``format``, ``name``, the observation spec (``agents.features.OBS_SPEC``)
and its hash, the action spec, the network shape, the training config, the git commit, the
command that trained the policy, the training budget, the evaluation summary and free-form notes.
``agents.inference.load_policy`` reads it back with numpy alone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from agents.export_files import MANIFEST, WEIGHTS
from agents.features import OBS_SPEC, SLOTS, obs_spec_hash
from agents.inference import FORMAT
from training.paths import ROOT


def git_commit() -> str:
    """The repository's HEAD commit (with ``+dirty`` when tracked files changed), or ``unknown``."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def scorer_tensors(policy: Any) -> dict[str, np.ndarray]:
    """The actor's weights as float32 numpy arrays, keyed like ``SlotScorer``'s state dict."""
    scorer = policy.mlp_extractor
    out = {}
    for prefix in ("phi", "head", "score"):
        for key, value in getattr(scorer, prefix).state_dict().items():
            out[f"{prefix}.{key}"] = value.detach().cpu().numpy().astype(np.float32)
    return out


def export_policy(
    policy: Any,
    directory: str | Path,
    *,
    name: str,
    training_config: dict,
    command: str,
    budget: dict | None = None,
    evaluation: dict | None = None,
    notes: list[str] | None = None,
) -> Path:
    """Write ``policy.safetensors`` and ``manifest.json`` for ``policy`` into ``directory``.

    :param policy: a ``training.policy.SlotScorerPolicy``.
    :param directory: output directory (created).
    :param name: the policy's name in reports.
    :param training_config: the resolved training config.
    :param command: the command line that trained it.
    :param budget: what training cost (agent-steps, wall-clock seconds, machine).
    :param evaluation: summary from ``training.evaluation.evaluate``.
    :param notes: free-form remarks (e.g. behaviour-cloning initialisation).
    :returns: the directory.
    """
    from safetensors.numpy import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    scorer = policy.mlp_extractor
    save_file(scorer_tensors(policy), str(directory / WEIGHTS))
    manifest = {
        "format": FORMAT,
        "name": name,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "obs_spec_hash": obs_spec_hash(),
        "obs_spec": OBS_SPEC,
        "action_spec": {
            "type": "discrete",
            "n": SLOTS,
            "meaning": "neighbour slot that gets the piece; greedy = argmax of masked scores",
            "distribution": "softmax over the scores of the slots whose action_mask is 1",
        },
        "network": {
            "kind": "per-neighbour scorer with mean-pooled context (training.policy.SlotScorer)",
            "hidden": scorer.hidden,
            "depth": scorer.depth,
            "activation": scorer.activation,
            "tensors": {k: list(v.shape) for k, v in scorer_tensors(policy).items()},
            "valid_slot_feature": "active",
        },
        "training_config": training_config,
        "git_commit": git_commit(),
        "command": command,
        "budget": budget or {},
        "evaluation": evaluation or {},
        "notes": notes or [],
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.export", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="an SB3 checkpoint .zip written by python -m training.train")
    parser.add_argument("out", type=Path, help="output directory for policy.safetensors and manifest.json")
    parser.add_argument("--name", help="policy name in reports (default: the output directory's name)")
    parser.add_argument(
        "--episodes",
        type=int,
        default=0,
        help="evaluate against seed on this many episodes per scenario for the manifest's summary (0: skip)",
    )
    args = parser.parse_args(argv)
    if not args.checkpoint.is_file():
        print(f"error: checkpoint '{args.checkpoint}' does not exist", file=sys.stderr)
        return 2
    if args.episodes < 0:
        print("error: --episodes must be >= 0", file=sys.stderr)
        return 2
    from sb3_contrib import MaskablePPO

    try:
        model = MaskablePPO.load(args.checkpoint, device="cpu")
    except Exception as err:
        print(f"error: cannot load checkpoint '{args.checkpoint}': {err.__class__.__name__}: {err}", file=sys.stderr)
        return 2
    evaluation = None
    if args.episodes:
        from training.evaluation import summarise

        evaluation = summarise(model.policy, None, args.episodes)
    out = export_policy(
        model.policy,
        args.out,
        name=args.name or args.out.name,
        training_config={"checkpoint": str(args.checkpoint)},
        command="python -m training.export " + " ".join(sys.argv[1:] if argv is None else argv),
        evaluation=evaluation,
    )
    print(f"exported {args.checkpoint} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
