"""Custody and trust gossip in the core (envs.gossip): blame where the piece died, gossip that slander
cannot turn, cliques that shift blame, and the same episodes with gossip off."""

from __future__ import annotations

import numpy as np
import pytest

from agents.attacker import GOSSIP_PRAISE, GOSSIP_SLANDER
from agents.baselines import get_baseline
from agents.gossip import MAX_REPORT_COUNT, direct_reports
from envs.core import BALLOT_STUFFER, BLACKHOLE, HONEST, LEARNED, METRIC_NAMES, MeshCore
from envs.scenario import as_scenario, load_scenario

SEEDS = [11, 12, 13]


def _play(scenario, gossip: bool = True, seeds=SEEDS) -> MeshCore:
    """Whole episodes of ``scenario`` under the seed heuristic (blind to gossip), one mesh per seed."""
    sc = scenario if not isinstance(scenario, str) else load_scenario(scenario)
    core = MeshCore(sc.replace(gossip={"enabled": gossip}), n_meshes=len(seeds))
    core.reset(episode_seeds=list(seeds))
    policy, rng = get_baseline("seed"), np.random.default_rng(0)
    for _ in range(core.episode_steps):
        obs = core.agent_observation()
        core.step(policy.act(obs.features, obs.action_mask, rng))
    return core


def _slots_of(core: MeshCore, judge_kind: int, subject_kind: int) -> tuple[np.ndarray, np.ndarray]:
    """Memory cells (row, slot) of judges of one kind on linked neighbours of another."""
    cells = core.link_mask & (core.kind[:, None] == judge_kind) & (core.kind[core.nbr] == subject_kind)
    return np.nonzero(cells)


def test_custody_lands_on_the_blackhole_not_on_the_honest_relay_before_it():
    core = _play("blackholes")
    m = core.memory
    relay = _slots_of(core, HONEST, HONEST)
    hole = _slots_of(core, HONEST, BLACKHOLE)
    # Honest relays handed pieces on to blackholes: those losses are beyond them, not theirs.
    assert m.beyond_losses[relay].sum() > 0
    assert m.beyond_losses[relay].sum() > 5 * m.own_losses[relay].sum()
    assert m.own_losses[hole].sum() > 0 and m.beyond_losses[hole].sum() == 0
    # End to end, the relays look worse than their custody record says.
    assert m.custody[relay].mean() > m.success[relay].mean()
    assert m.custody[relay].mean() > 0.9 > 0.5 > m.custody[hole][m.custody_count[hole] > 0].mean()


def test_a_clique_takes_the_blame_off_one_another():
    spec = {"nodes": 24, "adversaries": {"ballot_stuffer": {"fraction": 0.25, "clique": True}}, "seed": 5}
    alone = as_scenario({**spec, "adversaries": {"ballot_stuffer": {"fraction": 0.25, "clique": False}}})
    clique, single = _play(as_scenario(spec)), _play(alone)
    assert clique.has_clique and not single.has_clique
    judged = _slots_of(single, HONEST, BALLOT_STUFFER)
    assert single.memory.beyond_losses[judged].sum() == 0  # stuffers drop all they take: always their own loss
    judged = _slots_of(clique, HONEST, BALLOT_STUFFER)
    assert clique.memory.beyond_losses[judged].sum() > 0  # a fellow's false acceptance moved the blame


def test_with_gossip_off_a_gossip_blind_policy_plays_the_same_episodes():
    on, off = _play("slanderers", True), _play("slanderers", False)
    deliver = [[m["delivery_rate"] for m in c.metrics()] for c in (on, off)]
    assert deliver[0] == deliver[1]
    assert off.memory.net_reporters.sum() == 0 and (off.memory.net_rate == 1.0).all()
    assert on.memory.net_reporters.sum() > 0


def test_slanderers_accuse_few_honest_nodes_and_gossip_finds_the_blackholes_sooner():
    on, off = _play("slanderers", True), _play("slanderers", False)
    m_on, m_off = on.metrics(), off.metrics()
    assert np.mean([m["false_accusations"] for m in m_on]) <= 0.05
    assert all(m["false_accusations"] == 0.0 for m in m_off)  # custody alone never accuses the honest here
    assert np.mean([m["detected_share"] for m in m_on]) > np.mean([m["detected_share"] for m in m_off])
    assert np.mean([m["detection_steps"] for m in m_on]) < np.mean([m["detection_steps"] for m in m_off])


def test_trust_metrics_are_reported_in_range():
    core = _play("ballot_stuffers", seeds=[3])
    (metrics,) = core.metrics()
    assert {"detection_steps", "detected_share", "false_accusations"} <= set(METRIC_NAMES) <= set(metrics)
    assert 0 <= metrics["detection_steps"] <= core.episode_steps
    assert 0 <= metrics["detected_share"] <= 1 and 0 <= metrics["false_accusations"] <= 1


@pytest.mark.parametrize("choice", [GOSSIP_PRAISE, GOSSIP_SLANDER])
def test_a_learned_attacker_says_what_its_gossip_action_chooses(choice):
    core = MeshCore(load_scenario("learned"), n_meshes=1)
    core.reset(seed=0)
    core.gossip_choice[core.learned] = choice
    rate, count = direct_reports(core.memory)
    core._lies(rate, count)
    learned_rows = core.learned[:, None] & core.link_mask
    honest = learned_rows & (core.kind[core.nbr] == HONEST)
    allies = learned_rows & (core.kind[core.nbr] == LEARNED)
    if choice == GOSSIP_SLANDER:
        assert honest.any() and (rate[honest] == 0.0).all() and (count[honest] == MAX_REPORT_COUNT).all()
    else:
        assert (rate[honest] == 1.0).all()  # praise leaves honest subjects alone (nothing dropped yet)
        if allies.any():
            assert (count[allies] == MAX_REPORT_COUNT).all()
