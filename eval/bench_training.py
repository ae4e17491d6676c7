"""Training throughput: environment agent-steps per second while PPO learns.

Ours: ``MaskablePPO`` with the per-neighbour scorer on the default training mix (the setup of
``python -m training.train``). Two references in the same run, SB3 ``PPO`` (``MlpPolicy``) on
PettingZoo MPE ``simple_spread`` (3 agents per copy) through supersuit's vector-env conversion:

* ``equal``: the same PPO settings (n_steps, batch, epochs) and the same number of agent slots;
* ``tutorial``: as PettingZoo's SB3 tutorials set it up (8 copies, SB3's PPO defaults with
  ``batch_size=256``, ``learning_rate=1e-3``: n_steps 2048, 10 epochs).

Goal: at least 2x the reference. With equal PPO settings both sides spend most of their time in
the PPO update, which the environment's speed cannot shorten; both ratios are reported.
"""

from __future__ import annotations

import argparse
import time
import warnings

MIX = ["default", "honest", "liars", "blackholes", "overpricers", "mixed_heavy"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m eval.bench training``."""
    parser.add_argument("--meshes", type=int, default=16, help="mesh copies of ours (agent slots = 16 x meshes)")
    parser.add_argument("--rollouts", type=int, default=6, help="PPO rollouts (collect + update) timed per side")
    parser.add_argument("--n-steps", type=int, default=32, help="PPO n_steps of both sides")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of both sides")


def _timed_learn(model, steps: int) -> float:
    t0 = time.perf_counter()
    model.learn(steps)
    return steps / (time.perf_counter() - t0)


def run(args: argparse.Namespace) -> dict:
    """Measure both sides; print and return the figures."""
    import supersuit as ss
    import torch as th
    from mpe2 import simple_spread_v3
    from sb3_contrib import MaskablePPO
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecNormalize

    from training.policy import SlotScorerPolicy
    from training.vec import make_env

    if args.meshes < 1 or args.rollouts < 1 or args.n_steps < 1:
        raise SystemExit("error: --meshes, --rollouts and --n-steps must be >= 1")
    warnings.filterwarnings("ignore")
    th.set_num_threads(args.threads)
    env = VecNormalize(make_env(MIX, args.meshes, 0), norm_obs=False, norm_reward=True)
    slots = env.num_envs
    ppo_kwargs = dict(n_steps=args.n_steps, batch_size=2048, n_epochs=4, device="cpu", verbose=0)
    ours = MaskablePPO(SlotScorerPolicy, env, seed=0, **ppo_kwargs)  # supersuit's vec env has no seed()
    ours.learn(slots * args.n_steps)  # warm-up rollout
    ours_sps = _timed_learn(ours, slots * args.n_steps * args.rollouts)

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
        "reference": "SB3 PPO MlpPolicy on MPE simple_spread (N=3) via supersuit",
        "equal_settings_agent_steps_per_s": round(ref_sps),
        "equal_settings_agent_slots": ref_slots,
        "speedup_vs_equal_settings": round(ours_sps / ref_sps, 2),
        "tutorial_settings_agent_steps_per_s": round(tut_sps),
        "tutorial_settings_agent_slots": tut_env.num_envs,
        "speedup_vs_tutorial_settings": round(ours_sps / tut_sps, 2),
        "goal_speedup": 2.0,
    }
    print(
        f"training: ours {ours_sps:,.0f} agent-steps/s ({slots} slots); simple_spread with equal PPO settings "
        f"{ref_sps:,.0f} ({ref_slots} slots): {ours_sps / ref_sps:.2f}x; with the tutorial settings "
        f"{tut_sps:,.0f} ({tut_env.num_envs} slots): {ours_sps / tut_sps:.2f}x (goal >= 2x)"
    )
    return result
