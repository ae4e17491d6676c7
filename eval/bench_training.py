"""Training throughput: environment agent-steps per second while PPO learns.

Ours: ``training.ppo.DecisionPPO`` (``MaskablePPO`` whose update sees only decision rows) with the
per-neighbour scorer on the default training mix (the setup of ``python -m training.train``); the
same with the plain ``MaskablePPO`` over every slot (the loop before issue 26) beside it. Agent-steps
are counted over every slot, as SB3 counts them; decisions learned per second are reported beside
them (decision rows the updates learned from). Two references in the same run, SB3 ``PPO`` (``MlpPolicy``) on
PettingZoo MPE ``simple_spread`` (3 agents per copy) through supersuit's vector-env conversion:

* ``equal``: the same PPO settings (n_steps, batch, epochs) and the same number of agent slots;
* ``tutorial``: as PettingZoo's SB3 tutorials set it up (8 copies, SB3's PPO defaults with
  ``batch_size=256``, ``learning_rate=1e-3``: n_steps 2048, 10 epochs).

Goal (issue 26): at least 3x the equal-settings reference (moonshot 10x). With equal PPO settings
both sides spend most of their time in
the PPO update, which the environment's speed cannot shorten; both ratios are reported.
"""

from __future__ import annotations

import argparse
import time
import warnings

from eval import bench_quality

MIX = ["default", "honest", "liars", "blackholes", "overpricers", "mixed_heavy"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m eval.bench training``."""
    parser.add_argument("--meshes", type=int, default=16, help="mesh copies of ours (agent slots = 16 x meshes)")
    parser.add_argument("--rollouts", type=int, default=6, help="PPO rollouts (collect + update) timed per side")
    parser.add_argument("--n-steps", type=int, default=32, help="PPO n_steps of both sides")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of both sides")
    parser.add_argument("--no-padded", action="store_true", help="skip the plain MaskablePPO loop of ours")
    parser.add_argument(
        "--to-quality",
        action="store_true",
        help="instead: old and new loop from one seed, delivery vs training seconds, plotted (eval.bench_quality)",
    )
    bench_quality.add_arguments(parser)


def _timed_learn(model, steps: int) -> float:
    t0 = time.perf_counter()
    model.learn(steps)
    return steps / (time.perf_counter() - t0)


def run(args: argparse.Namespace) -> dict:
    """Measure both sides; print and return the figures (``--to-quality``: ``eval.bench_quality``)."""
    if args.to_quality:
        return bench_quality.run(args)
    import supersuit as ss
    import torch as th
    from mpe2 import simple_spread_v3
    from sb3_contrib import MaskablePPO
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecNormalize

    from training.policy import SlotScorerPolicy
    from training.ppo import DecisionPPO
    from training.vec import make_env

    if args.meshes < 1 or args.rollouts < 1 or args.n_steps < 1:
        raise SystemExit("error: --meshes, --rollouts and --n-steps must be >= 1")
    warnings.filterwarnings("ignore")
    th.set_num_threads(args.threads)
    env = VecNormalize(make_env(MIX, args.meshes, 0), norm_obs=False, norm_reward=True)
    slots = env.num_envs
    ppo_kwargs = dict(n_steps=args.n_steps, batch_size=2048, n_epochs=4, device="cpu", verbose=0)
    ours = DecisionPPO(SlotScorerPolicy, env, seed=0, **ppo_kwargs)  # supersuit's vec env has no seed()
    ours.learn(slots * args.n_steps)  # warm-up rollout
    learned0 = ours.decisions_learned
    t0 = time.perf_counter()
    ours.learn(slots * args.n_steps * args.rollouts)
    seconds = time.perf_counter() - t0
    ours_sps = slots * args.n_steps * args.rollouts / seconds
    ours_dps = (ours.decisions_learned - learned0) / seconds
    padded_sps = None
    if not args.no_padded:
        padded_env = VecNormalize(make_env(MIX, args.meshes, 0), norm_obs=False, norm_reward=True)
        padded = MaskablePPO(SlotScorerPolicy, padded_env, seed=0, **ppo_kwargs)
        padded.learn(slots * args.n_steps)
        padded_sps = _timed_learn(padded, slots * args.n_steps * args.rollouts)

    copies = max(1, round(slots / 3))
    ref_env = simple_spread_v3.parallel_env(N=3, max_cycles=25, continuous_actions=False)
    ref_env = ss.pettingzoo_env_to_vec_env_v1(ref_env)
    ref_env = ss.concat_vec_envs_v1(ref_env, copies, num_cpus=0, base_class="stable_baselines3")
    ref_slots = ref_env.num_envs
    ref = PPO("MlpPolicy", ref_env, **ppo_kwargs)
    ref.learn(ref_slots * args.n_steps)
    ref_sps = _timed_learn(ref, ref_slots * args.n_steps * args.rollouts)

    tut_env = simple_spread_v3.parallel_env(N=3, max_cycles=25, continuous_actions=False)
    tut_env = ss.concat_vec_envs_v1(
        ss.pettingzoo_env_to_vec_env_v1(tut_env), 8, num_cpus=0, base_class="stable_baselines3"
    )
    tut = PPO("MlpPolicy", tut_env, batch_size=256, learning_rate=1e-3, device="cpu", verbose=0)
    tut_sps = _timed_learn(tut, tut.n_steps * tut_env.num_envs * max(1, args.rollouts // 3))
    result = {
        "ours_agent_steps_per_s": round(ours_sps),
        "ours_agent_slots": slots,
        "ours_decisions_learned_per_s": round(ours_dps),
        "ours_decision_fraction": round(ours_dps / ours_sps, 3),
        "padded_maskableppo_agent_steps_per_s": None if padded_sps is None else round(padded_sps),
        "reference": "SB3 PPO MlpPolicy on MPE simple_spread (N=3) via supersuit",
        "equal_settings_agent_steps_per_s": round(ref_sps),
        "equal_settings_agent_slots": ref_slots,
        "speedup_vs_equal_settings": round(ours_sps / ref_sps, 2),
        "tutorial_settings_agent_steps_per_s": round(tut_sps),
        "tutorial_settings_agent_slots": tut_env.num_envs,
        "speedup_vs_tutorial_settings": round(ours_sps / tut_sps, 2),
        "goal_speedup": 3.0,
    }
    padded_text = "" if padded_sps is None else f", plain MaskablePPO over every slot {padded_sps:,.0f}"
    print(
        f"training: ours {ours_sps:,.0f} agent-steps/s ({slots} slots; {ours_dps:,.0f} decisions learned/s"
        f"{padded_text}); simple_spread with equal PPO settings "
        f"{ref_sps:,.0f} ({ref_slots} slots): {ours_sps / ref_sps:.2f}x; with the tutorial settings "
        f"{tut_sps:,.0f} ({tut_env.num_envs} slots): {ours_sps / tut_sps:.2f}x (goal >= 3x with equal settings)"
    )
    return result
