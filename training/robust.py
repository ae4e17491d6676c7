"""Adversarial training of the routing policy: ``python -m training.train robust=true ...``.

The defender (the PPO run of ``training.train``) alternates with best-response attackers, a
small PSRO / league loop (Lanctot et al. 2017):

1. **Attacker phase** (round ``r``): the current defender is exported and frozen (numpy), and a
   best-response attacker is trained against it for ``adversarial.attacker_steps``
   (``training.attack.train_attacker`` on ``adversarial.scenario``, tensorboard under
   ``runs/<run>/attacker_round_<r>/``, export under ``checkpoints/<run>/attackers/round_<r>/``).
   Its cost to the frozen defender on fixed episodes is logged as ``robust/best_response_delivery``,
   ``robust/null_delivery`` and ``robust/delivery_cost``.
2. **Defender phase**: the snapshot joins the *population*; the defender trains for its share of
   ``total_timesteps`` on the usual mix plus the learned scenario (``adversarial.share`` of the
   meshes), whose learned nodes are each episode driven by a snapshot drawn uniformly from the
   population (every past round's attacker, not only the latest), and the learned scenario with
   each of ``adversarial.scripted`` in the learned nodes' place.

``init=DIR`` starts the defender's actor from an exported policy (e.g. ``checkpoints/default``);
its critic starts fresh and is trained alone for ``adversarial.critic_warmup`` agent-steps first
(the actor's weights frozen), so a cold value function does not wreck a good actor.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from training.hydra_app import UserError


def robust_mix(cfg: Any, mix: list) -> tuple[list, Any]:
    """The defender's mix with the learned scenario added; returns ``(mix, learned_scenario)``."""
    from envs.scenario import ADVERSARY_KINDS
    from training.attack import attacker_scenarios

    a = cfg.adversarial
    learned = attacker_scenarios([str(a.scenario)])[0]
    share = float(a.share)
    if not 0 < share < 1:
        raise UserError(f"adversarial.share must be in (0, 1), got {share}")
    unknown = [k for k in a.scripted if str(k) not in ADVERSARY_KINDS]
    if unknown:
        raise UserError(f"adversarial.scripted: unknown kind '{unknown[0]}' (known: {', '.join(ADVERSARY_KINDS)})")
    if learned.episode_steps != mix[0].episode_steps:
        raise UserError("adversarial.scenario must share episode_steps with the training mix")
    # The share counts against every other mesh of the mix, the scripted stand-ins included.
    copies = max(1, math.ceil(share * (len(mix) + len(a.scripted)) / (1 - share)))
    return mix + [learned] * copies + [learned.with_learned_as(str(k)) for k in a.scripted], learned


def check_robust(cfg: Any) -> None:
    """Validate the ``adversarial`` block before anything heavy runs."""
    a = cfg.adversarial
    for key in ("rounds", "attacker_steps"):
        if int(a[key]) < 1:
            raise UserError(f"adversarial.{key} must be >= 1, got {a[key]}")
    if int(a.critic_warmup) < 0 or int(a.eval_episodes) < 0:
        raise UserError("adversarial.critic_warmup and adversarial.eval_episodes must be >= 0")


def check_init(directory: str | Path, policy_cfg: Any) -> None:
    """Refuse an ``init=DIR`` export that is unreadable or whose network differs from ``policy.*``,
    before the run creates its directories (a mistake must leave nothing behind)."""
    from agents.inference import PolicyLoadError, read_manifest

    try:
        net = read_manifest(directory, allow_prefix=True).get("network", {})
    except PolicyLoadError as err:
        raise UserError(f"init: {err}") from None
    _same_network(net, int(policy_cfg.hidden), int(policy_cfg.depth), str(policy_cfg.activation))


def _same_network(net: dict, hidden: int, depth: int, activation: str) -> None:
    ours = {"hidden": hidden, "depth": depth, "activation": activation}
    theirs = {k: net.get(k) for k in ours}
    if theirs != ours:
        raise UserError(f"init: the export's network {theirs} differs from policy {ours} (set policy.* to match)")


def load_actor(policy: Any, directory: str | Path) -> None:
    """Copy an exported scorer's weights (``training.export``) into ``policy``'s actor (phi, head, score).

    An export of an older observation spec whose features are a prefix of this one's
    (``agents.features.PREFIX_SPECS``) is accepted: the new feature columns of the first layer start
    at zero, so the actor starts out acting exactly as the export does and learns to use them.
    """
    import numpy as np
    import torch as th

    from agents.inference import PolicyLoadError, read_export

    try:
        manifest, tensors = read_export(directory, allow_prefix=True)
    except PolicyLoadError as err:
        raise UserError(f"init: {err}") from None
    scorer = policy.mlp_extractor
    _same_network(manifest.get("network", {}), scorer.hidden, scorer.depth, scorer.activation)
    first = tensors["phi.0.weight"]
    wanted = scorer.phi[0].weight.shape[1]
    if first.shape[1] < wanted:
        tensors = {**tensors, "phi.0.weight": np.pad(first, ((0, 0), (0, wanted - first.shape[1])))}
    for prefix in ("phi", "head", "score"):
        module = getattr(scorer, prefix)
        state = {k: th.as_tensor(tensors[f"{prefix}.{k}"]) for k in module.state_dict()}
        module.load_state_dict(state)


def actor_parameters(policy: Any) -> list:
    """The parameters of the actor part of a ``SlotScorerPolicy`` (frozen during the critic warm-up)."""
    scorer = policy.mlp_extractor
    return [p for m in (scorer.phi, scorer.head, scorer.score) for p in m.parameters()]


def run_robust(
    cfg: Any,
    model: Any,
    env: Any,
    callbacks: Any,
    learned: Any,
    ckpt_dir: Path,
    run_dir: Path,
    progress_bar: bool,
) -> list[dict]:
    """The alternating loop of the module docstring; ``env`` is the ``MeshVecEnv`` under the defender.

    Returns one record per round (attacker export, its cost to the frozen defender, seconds).
    """
    from agents.inference import load_policy
    from training.attack import attack_cost, cost_summary, export_attacker, numpy_attacker, train_attacker
    from training.export import export_policy

    a = cfg.adversarial
    rounds = int(a.rounds)
    per_round = max(int(cfg.total_timesteps) // rounds, 1)
    population: list = []
    records: list[dict] = []
    logger = model.logger
    warmup = int(a.critic_warmup) if cfg.get("init") else 0
    if warmup:
        for p in actor_parameters(model.policy):
            p.requires_grad_(False)
        print(f"critic warm-up: {warmup} agent-steps with the actor frozen")
        model.learn(warmup, callback=callbacks, reset_num_timesteps=True, progress_bar=progress_bar)
        for p in actor_parameters(model.policy):
            p.requires_grad_(True)
    for r in range(rounds):
        t0 = time.time()
        where = ckpt_dir / "defenders" / f"round_{r}"
        snapshot_dir = export_policy(model.policy, where, name=f"defender_round_{r}", training_config={}, command="")
        defender = load_policy(snapshot_dir)
        attacker_model = train_attacker(
            defender,
            [learned],
            int(a.attacker_steps),
            seed=int(cfg.seed) * 1000 + r,
            n_envs=int(a.attacker_envs),
            log_dir=run_dir / f"attacker_round_{r}",
        )
        out = export_attacker(
            attacker_model.policy,
            ckpt_dir / "attackers" / f"round_{r}",
            name=f"attacker_round_{r}",
            training_config={"round": r, "attacker_steps": int(a.attacker_steps)},
            command="training.robust",
            defender=str(snapshot_dir),
        )
        attacker = numpy_attacker(attacker_model.policy, f"attacker_round_{r}")
        population.append(attacker)
        record: dict[str, Any] = {"round": r, "attacker": str(out), "defender_steps": model.num_timesteps}
        if int(a.eval_episodes) > 0:
            cost = cost_summary(attack_cost(defender, attacker, learned, int(a.eval_episodes), 30_000))
            d = cost["delivery_rate"]
            record["delivery_rate"] = d
            logger.record("robust/best_response_delivery", d["attacked"]["mean"])
            logger.record("robust/null_delivery", d["null"]["mean"])
            logger.record("robust/delivery_cost", -d["paired_attacked_minus_null"]["mean"])
            print(
                f"round {r}: best response leaves delivery {d['attacked']['mean']:.3f} "
                f"(null attacker {d['null']['mean']:.3f})"
            )
        logger.record("robust/population", len(population))
        logger.record("robust/round", r)
        logger.dump(model.num_timesteps)
        env.set_attacker_policies(population)
        record["attacker_seconds"] = round(time.time() - t0, 1)
        model.learn(per_round, callback=callbacks, reset_num_timesteps=False, progress_bar=progress_bar)
        records.append(record)
    return records
