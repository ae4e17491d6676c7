"""One routing decision for 8 neighbours: numpy inference vs the same call in torch.

Numpy: ``agents.inference.NumpyPolicy.act`` on one ``(1, 8, 23)`` observation, the live node's
call. Torch: the same scorer (``training.policy.SlotScorerPolicy.slot_scores`` under
``no_grad``, then the masked argmax) on the same observation. Both load the same weights:
``checkpoints/default`` when present, else a freshly initialised scorer exported to a temporary
directory. Goals: numpy p50 under 30 microseconds and at least 5x faster than torch.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m eval.bench decision``."""
    parser.add_argument("--policy", type=Path, default=ROOT / "checkpoints" / "default", help="export directory")
    parser.add_argument("--calls", type=int, default=20000, help="timed calls per side")


def _percentiles(fn, calls: int) -> tuple[float, float]:
    for _ in range(200):
        fn()
    times = np.empty(calls)
    clock = time.perf_counter_ns
    for i in range(calls):
        t0 = clock()
        fn()
        times[i] = clock() - t0
    return float(np.percentile(times, 50) / 1e3), float(np.percentile(times, 99) / 1e3)


def _observation() -> tuple[np.ndarray, np.ndarray]:
    """A real decision with all 8 neighbour slots valid."""
    from agents.features import N_FEATURES, SLOTS

    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, (1, SLOTS, N_FEATURES)).astype(np.float32)
    x[..., -1] = 1.0
    return x, np.ones((1, SLOTS), dtype=np.int8)


def run(args: argparse.Namespace) -> dict:
    """Measure both sides; print and return the figures."""
    import torch as th
    from sb3_contrib import MaskablePPO

    from agents.inference import load_policy
    from training.export import export_policy
    from training.policy import SlotScorerPolicy
    from training.vec import make_env

    if args.calls < 1:
        raise SystemExit("error: --calls must be >= 1")
    th.set_num_threads(1)
    model = MaskablePPO(SlotScorerPolicy, make_env(["honest"], 1, 0), n_steps=8, batch_size=8, device="cpu")
    tmp = None
    if (args.policy / "policy.safetensors").is_file():
        numpy_policy = load_policy(args.policy)
        from safetensors.torch import load_file

        state = load_file(str(args.policy / "policy.safetensors"))
        net = numpy_policy.manifest["network"]
        model = MaskablePPO(
            SlotScorerPolicy,
            make_env(["honest"], 1, 0),
            n_steps=8,
            batch_size=8,
            device="cpu",
            policy_kwargs={"hidden": net["hidden"], "depth": net["depth"], "activation_name": net["activation"]},
        )
        model.policy.mlp_extractor.load_state_dict(state, strict=False)
        source = str(args.policy)
    else:
        tmp = tempfile.TemporaryDirectory()
        export_policy(model.policy, tmp.name, name="random", training_config={}, command="bench")
        numpy_policy = load_policy(tmp.name)
        source = "freshly initialised scorer"
    x, mask = _observation()
    xt, mask_b = th.as_tensor(x), mask.astype(bool)
    policy = model.policy

    def torch_call() -> np.ndarray:
        with th.no_grad():
            scores = policy.slot_scores(xt).numpy()
        return np.argmax(np.where(mask_b, scores, -np.inf), axis=-1)

    assert int(torch_call()[0]) == int(numpy_policy.act(x, mask)[0])
    np_p50, np_p99 = _percentiles(lambda: numpy_policy.act(x, mask), args.calls)
    th_p50, th_p99 = _percentiles(torch_call, args.calls)
    if tmp is not None:
        tmp.cleanup()
    result = {
        "policy": source,
        "numpy_p50_us": round(np_p50, 2),
        "numpy_p99_us": round(np_p99, 2),
        "torch_p50_us": round(th_p50, 2),
        "torch_p99_us": round(th_p99, 2),
        "speedup_p50": round(th_p50 / np_p50, 2),
        "goal": "numpy p50 < 30 us and >= 5x torch",
    }
    print(
        f"decision: numpy p50 {np_p50:.1f} us (p99 {np_p99:.1f}) vs torch p50 {th_p50:.1f} us "
        f"(p99 {th_p99:.1f}): {th_p50 / np_p50:.1f}x (goal: < 30 us, >= 5x)"
    )
    return result
