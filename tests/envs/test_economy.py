"""The economy modes on the shipped blackhole and forger scenarios: who gets paid, what memory learns.

``forgers`` is ``blackholes`` with forgers in the blackholes' places (same seed and counts), so
the four economies and the two kinds are compared on identical meshes and traffic.
"""

from __future__ import annotations

import numpy as np
import pytest

from agents.baselines import get_baseline
from envs.core import BLACKHOLE, FORGER, HONEST, MeshCore
from envs.scenario import load_scenario

SEEDS = [300, 301, 302]
STEPS = 80


def play(name: str, payment: str, receipts: str) -> MeshCore:
    scenario = load_scenario(name).replace(economy={"payment": payment, "receipts": receipts}, episode_steps=STEPS)
    core = MeshCore(scenario, n_meshes=len(SEEDS))
    core.reset(episode_seeds=SEEDS)
    policy, rng = get_baseline("seed"), np.random.default_rng(0)
    for _ in range(STEPS):
        obs = core.agent_observation()
        core.step(policy.act(obs.features, obs.action_mask, rng=rng, oracle_actions=None))
    return core


def total(core: MeshCore, key: str) -> float:
    return sum(m[key] for m in core.metrics())


def honest_trust_in(core: MeshCore, kind: int) -> float:
    """Mean success estimate honest nodes hold of their neighbours of ``kind`` they have used."""
    judged = (
        core.mask & (core.kind == HONEST)[:, None] & (core.kind[core.nbr] == kind) & (core.memory.success_count > 0)
    )
    assert judged.any()
    return float(core.memory.success[judged].mean())


def test_the_forger_scenario_is_the_blackhole_scenario_with_forgers_in_their_places():
    a, b = load_scenario("blackholes"), load_scenario("forgers")
    assert a.adversary_counts()["blackhole"] == b.adversary_counts()["forger"] > 0
    hole, forger = MeshCore(a), MeshCore(b)
    hole.reset(episode_seeds=[300])
    forger.reset(episode_seeds=[300])
    np.testing.assert_array_equal(hole.kind == BLACKHOLE, forger.kind == FORGER)
    np.testing.assert_array_equal(hole.nbr, forger.nbr)


def test_default_economy_is_on_delivery_with_signed_receipts():
    economy = load_scenario("default").economy
    assert (economy.payment, economy.receipts) == ("on_delivery", "signed")


@pytest.mark.parametrize("receipts", ["signed", "unsigned"])
def test_blackholes_are_paid_per_hop_and_never_on_delivery(receipts):
    per_hop, on_delivery = play("blackholes", "per_hop", receipts), play("blackholes", "on_delivery", receipts)
    assert total(per_hop, "earned_blackhole") > 0 and total(per_hop, "unpaid_charges") == 0
    assert total(on_delivery, "earned_blackhole") == 0 and total(on_delivery, "unpaid_charges") > 0
    assert all(m["dishonest_payments_share"] == 0 for m in on_delivery.metrics())
    # The money mode changes no decision of the seed policy (it does not see payments).
    assert total(per_hop, "delivered") == total(on_delivery, "delivered")


def test_signed_receipts_reject_every_forged_claim_and_count_it_as_a_loss():
    signed, unsigned = play("forgers", "on_delivery", "signed"), play("forgers", "on_delivery", "unsigned")
    assert total(signed, "forged_receipts_rejected") > 0 and total(signed, "forged_receipts_accepted") == 0
    assert total(unsigned, "forged_receipts_accepted") > 0 and total(unsigned, "forged_receipts_rejected") == 0
    # Signed: forgers are never paid and honest nodes learn they lose pieces.
    assert total(signed, "earned_forger") == 0 and np.all(signed.balance[signed.kind == FORGER] == 0)
    assert honest_trust_in(signed, FORGER) < 0.5
    # Unsigned: the forged claim is believed, so forgers look reliable and are paid as if they delivered.
    assert total(unsigned, "earned_forger") > 0
    assert honest_trust_in(unsigned, FORGER) > 0.9
    # A forged claim is never a delivery.
    assert total(unsigned, "delivered") < total(signed, "delivered")


def test_forged_claims_fool_memory_even_per_hop_unless_signed():
    signed, unsigned = play("forgers", "per_hop", "signed"), play("forgers", "per_hop", "unsigned")
    assert honest_trust_in(unsigned, FORGER) > 0.9 > 0.5 > honest_trust_in(signed, FORGER)
    assert total(signed, "earned_forger") > 0  # per hop, a forger keeps what it took either way


def test_blackholes_claim_nothing():
    core = play("blackholes", "on_delivery", "unsigned")
    assert total(core, "forged_receipts_accepted") == 0 and total(core, "forged_receipts_rejected") == 0
