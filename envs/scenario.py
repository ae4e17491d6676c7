"""Scenario schema: what a mesh looks like, validated with one-line errors.

A scenario is YAML (or a dict) with these keys; every key has a default::

    name: default                 # free text, shown in reports
    nodes: 24                     # total nodes, 4..16384 (honest + dishonest)
    topology:
      kind: random_geometric      # random_geometric | barabasi_albert | watts_strogatz
      mean_degree: 6              # target mean degree (2..SLOTS); nodes keep at most SLOTS=8 peers
      rewire_p: 0.1               # watts_strogatz rewiring probability
    traffic:
      streams: 8                  # number of streams (a source and its subscribers), 1..nodes
      subscribers: 2              # subscribers per stream
      load: 0.3                   # offered load: each stream emits Poisson(load / 2) pieces/step; at 1.0 a
                                  #   stream takes half of a full-speed node (1 piece/step) at every hop
      deadline_slack: 12          # steps a piece may take beyond 2x its shortest-path latency
      value: 1.0                  # mean value of a piece (uniform in [0.5, 1.5] x value)
    adversaries:                  # fractions of all nodes; each in [0, 1], all kinds together <= 0.9.
                                  #   Naming adversaries sets every kind it does not name to 0; the
                                  #   defaults below hold only for a scenario without the key
      bandwidth_liar: 0.1         # claims full bandwidth, has 10-25 % of it
      blackhole: 0.1              # accepts pieces and payment, forwards nothing
      overpricer: 0.1             # quotes overprice_factor x the fair formula
      forger: 0.0                 # a blackhole that also claims delivery of what it drops (caught
                                  #   only by signed receipts)
      grey_hole: 0.0              # or {fraction: 0.1, drop_probability: 0.5}: drops each piece it
                                  #   takes with this probability (in (0, 1]), forwards the rest honestly
      on_off: 0.0                 # or {fraction: 0.1, honest_steps: 40, attack_steps: 20}: alternates
                                  #   honest phases (forwards) and blackhole phases (drops what it
                                  #   takes); each node starts at a random point of its cycle
      selective: 0.0              # or {fraction: 0.1, value_quantile: 0.7}: drops only the pieces
                                  #   whose value is above this quantile (in [0, 1)) of the
                                  #   scenario's piece values, forwards the others
      whitewasher: 0.0            # or {fraction: 0.1, rejoin_after: 20}: a blackhole that, once most
                                  #   of its honest neighbours that have sent it pieces rate its
                                  #   success below 0.5, leaves and rejoins rejoin_after steps
                                  #   (>= 1) later as a fresh identity: its neighbours' memory of
                                  #   it starts over
      slanderer: 0.0              # forwards honestly (by script) but gossips that every honest
                                  #   neighbour drops everything it is given (agents.gossip)
      ballot_stuffer: 0.0         # or {fraction: 0.1, drop_probability: 1.0, clique: false}: drops
                                  #   each piece it takes with drop_probability (in [0, 1]) and
                                  #   gossips that its fellow cheats deliver everything; with clique:
                                  #   true the ballot stuffers also take the blame off one another
                                  #   (one signs a false custody acceptance for a fellow's drop)
      learned: 0.0                # or {fraction: 0.15, objective: damage}: nodes driven by a learned
                                  #   (or any given) attacker policy, the PettingZoo agents
                                  #   attacker_0.. (see envs.learned); objective damage rewards the
                                  #   honest value lost through them, profit their earnings minus
                                  #   costs. Without a policy they act honestly (agents.attacker.NullAttacker)
    Every kind takes the float form ``kind: fraction`` (its parameters at their defaults) or the
    mapping form ``kind: {fraction: F, ...}``; a mapping's missing keys take the defaults above.
    Every kind that drops pieces (blackhole, forger, grey_hole, on_off, selective, whitewasher,
    ballot_stuffer) also
    advertises short routes and undercuts the fair price, to attract traffic; learned nodes choose
    their quote, claimed bandwidth and route discount each step.
    gossip:                       # trust gossip (agents.gossip): each node's custody evidence about
                                  #   its neighbours, sent to its neighbours every period steps
      enabled: true               #   false: no reports (the same episodes without gossip)
      period: 5                   #   steps between reports (>= 1)
    dynamics:                     # a mesh that changes while it runs; every key off by default
      churn:                      # or null
        leave_probability: 0.002  #   each step each present honest node leaves with this probability
                                  #   (in [0, 0.5]); its queue is lost (counted as dropped)
        rejoin_steps: 30          #   steps (>= 1) until it comes back, with its memory
      turn_dishonest:             # or null
        fraction: 0.1             #   fraction of all nodes, drawn among the honest nodes that are
        at_step: 100              #   neither sources nor subscribers (at most all of those), that
                                  #   become blackholes at this step (>= 0); counts towards the 0.9
      load_shift:                 # or null
        at_step: 100              #   from this step (>= 0) on, every stream's offered load is
        load: 0.9                 #   this (in (0, 4])
    economy:
      base_cost: 0.02             # mean real cost of forwarding one unit (uniform +-10 % per node)
      overprice_factor: 4.0       # overpricers' quote multiplier
      queue_limit: 20             # pieces a node queues; more are refused (dropped)
      payment: on_delivery        # on_delivery: a hop's charge is paid only when the destination's
                                  #   receipt for the piece comes back; a piece dropped or expired
                                  #   leaves every charge on its path unpaid. per_hop: every hop is
                                  #   paid when it takes the piece (the comparison mode)
      receipts: signed            # signed: the destination signs the receipt, so only a real
                                  #   delivery counts as a success (a forger's claim is rejected,
                                  #   counted in forged_receipts_rejected, and is a loss); unsigned:
                                  #   anyone can claim delivery, so a forger's claim is believed
                                  #   (a success in memory and, under on_delivery, paid)
    reward:
      welfare_weight: 1.0         # weight of delivered value in each forwarder's reward (once per piece)
    held_out: false               # true: a held-out test scenario, refused by training's mix
    episode_steps: 200            # steps per episode
    seed: 0                       # seeds the env's generator at the first reset() without a seed;
                                  #   each episode draws its own seed from it (eval.evaluate plays
                                  #   episode k of a run with seed + k)

Dishonest nodes are never sources or subscribers. :func:`load_scenario` accepts a shipped name
(``conf/scenario/NAME.yaml``) or a path; :func:`as_scenario` also accepts a dict or a
:class:`Scenario`. Any problem raises :class:`ScenarioError` whose message is one line naming
the key and the reason.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "conf" / "scenario"
TOPOLOGY_KINDS = ("random_geometric", "barabasi_albert", "watts_strogatz")
PAYMENT_MODES = ("on_delivery", "per_hop")
RECEIPT_MODES = ("signed", "unsigned")
#: Every scripted dishonest kind, in the order of the ``adversaries`` keys.
ADVERSARY_KINDS = (
    "bandwidth_liar",
    "blackhole",
    "overpricer",
    "forger",
    "grey_hole",
    "on_off",
    "selective",
    "whitewasher",
    "slanderer",
    "ballot_stuffer",
)
#: The adversaries key of nodes driven by a learned attacker policy (not a scripted kind).
LEARNED = "learned"
#: Every ``adversaries`` key: the scripted kinds, then ``learned``.
ADVERSARY_KEYS = (*ADVERSARY_KINDS, LEARNED)
#: What a learned attacker is rewarded for (``adversaries.learned.objective``).
ATTACKER_OBJECTIVES = ("damage", "profit")
#: One-line reasons for a bad enum value, by the key's last component.
_CHOICES = {"kind": ("topology kind", TOPOLOGY_KINDS), "payment": ("payment mode", PAYMENT_MODES)}
_CHOICES["receipts"] = ("receipts mode", RECEIPT_MODES)
_CHOICES["objective"] = ("attacker objective", ATTACKER_OBJECTIVES)
MAX_SCENARIO_BYTES = 1 << 20
#: Largest mesh: routing state is 12 x nodes x subscribed destinations bytes (see ``envs.routing``).
MAX_NODES = 16384


class ScenarioError(ValueError):
    """A scenario that cannot be used; ``str(err)`` is a one-line reason naming the key."""


class _Strict(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    pass


class Topology(_Strict):
    """Graph family and its parameters."""

    kind: Literal["random_geometric", "barabasi_albert", "watts_strogatz"] = "random_geometric"
    mean_degree: float = 6.0
    rewire_p: float = 0.1


class Traffic(_Strict):
    """Streams and their load."""

    streams: int = 8
    subscribers: int = 2
    load: float = 0.3
    deadline_slack: int = 12
    value: float = 1.0


class Share(_Strict):
    """The mapping form of a kind without parameters: ``{fraction: F}``."""

    fraction: float = 0.0


class GreyHole(_Strict):
    """Drops each piece it takes with ``drop_probability``, forwards the rest honestly."""

    fraction: float = 0.0
    drop_probability: float = 0.5


class OnOff(_Strict):
    """Alternates ``honest_steps`` of honest forwarding and ``attack_steps`` of blackholing."""

    fraction: float = 0.0
    honest_steps: int = 40
    attack_steps: int = 20


class Selective(_Strict):
    """Drops only the pieces whose value is above ``value_quantile`` of the scenario's piece values."""

    fraction: float = 0.0
    value_quantile: float = 0.7


class Whitewasher(_Strict):
    """A blackhole that rejoins as a fresh identity ``rejoin_after`` steps after it is found out."""

    fraction: float = 0.0
    rejoin_after: int = 20


class BallotStuffer(_Strict):
    """Drops with ``drop_probability`` and praises its fellow cheats in gossip; a ``clique`` also
    shifts custody blame onto a fellow ballot stuffer."""

    fraction: float = 0.0
    drop_probability: float = 1.0
    clique: bool = False


class Learned(_Strict):
    """Nodes driven by an attacker policy, rewarded for ``objective`` (``damage`` or ``profit``)."""

    fraction: float = 0.0
    objective: Literal["damage", "profit"] = "damage"


class Adversaries(_Strict):
    """Fractions (and parameters) of nodes of each dishonest kind; see :meth:`Scenario.adversary`."""

    bandwidth_liar: float | Share = 0.1
    blackhole: float | Share = 0.1
    overpricer: float | Share = 0.1
    forger: float | Share = 0.0
    grey_hole: float | GreyHole = 0.0
    on_off: float | OnOff = 0.0
    selective: float | Selective = 0.0
    whitewasher: float | Whitewasher = 0.0
    slanderer: float | Share = 0.0
    ballot_stuffer: float | BallotStuffer = 0.0
    learned: float | Learned = 0.0


#: The parameter struct of each kind (the mapping form).
ADVERSARY_TYPES: dict[str, type] = {
    "bandwidth_liar": Share,
    "blackhole": Share,
    "overpricer": Share,
    "forger": Share,
    "grey_hole": GreyHole,
    "on_off": OnOff,
    "selective": Selective,
    "whitewasher": Whitewasher,
    "slanderer": Share,
    "ballot_stuffer": BallotStuffer,
    LEARNED: Learned,
}


class Churn(_Strict):
    """Honest nodes leave (losing their queue) and rejoin later."""

    leave_probability: float = 0.002
    rejoin_steps: int = 30


class TurnDishonest(_Strict):
    """Honest nodes that become blackholes at ``at_step``."""

    fraction: float = 0.1
    at_step: int = 100


class LoadShift(_Strict):
    """Every stream's offered load becomes ``load`` at ``at_step``."""

    at_step: int = 100
    load: float = 0.9


class Dynamics(_Strict):
    """Changes of the mesh during an episode; each is off (None) by default."""

    churn: Churn | None = None
    turn_dishonest: TurnDishonest | None = None
    load_shift: LoadShift | None = None


class Gossip(_Strict):
    """Trust gossip between neighbours (``agents.gossip``)."""

    enabled: bool = True
    period: int = 5


class Economy(_Strict):
    """Costs, prices, when hops are paid and whether receipts are signed."""

    base_cost: float = 0.02
    overprice_factor: float = 4.0
    queue_limit: int = 20
    payment: Literal["on_delivery", "per_hop"] = "on_delivery"
    receipts: Literal["signed", "unsigned"] = "signed"


class Reward(_Strict):
    """Reward weights."""

    welfare_weight: float = 1.0


class Scenario(_Strict):
    """A validated scenario; build it with :func:`as_scenario` or :func:`load_scenario`."""

    name: str = "custom"
    description: str = ""
    held_out: bool = False
    nodes: int = 24
    topology: Topology = msgspec.field(default_factory=Topology)
    traffic: Traffic = msgspec.field(default_factory=Traffic)
    adversaries: Adversaries = msgspec.field(default_factory=Adversaries)
    economy: Economy = msgspec.field(default_factory=Economy)
    reward: Reward = msgspec.field(default_factory=Reward)
    dynamics: Dynamics = msgspec.field(default_factory=Dynamics)
    gossip: Gossip = msgspec.field(default_factory=Gossip)
    episode_steps: int = 200
    seed: int = 0

    def adversary(self, kind: str) -> Any:
        """The parameters of dishonest ``kind`` in mapping form (a float becomes ``{fraction: F}``)."""
        value = getattr(self.adversaries, kind)
        return ADVERSARY_TYPES[kind](fraction=float(value)) if isinstance(value, (int, float)) else value

    def adversary_counts(self) -> dict[str, int]:
        """Number of nodes of each dishonest kind and of learned nodes (fraction x nodes, rounded)."""
        return {kind: round(self.adversary(kind).fraction * self.nodes) for kind in ADVERSARY_KEYS}

    def adversary_summary(self) -> str:
        """The effective adversaries in one line, e.g. ``blackhole 25 %, grey_hole 10 % (drop_probability
        0.5)``, or ``none``: every kind with a non-zero fraction and, in mapping form, its parameters."""
        parts = []
        for kind in ADVERSARY_KEYS:
            params = msgspec.to_builtins(self.adversary(kind))
            fraction = params.pop("fraction")
            if fraction > 0:
                extra = ", ".join(f"{k} {v}" for k, v in params.items())
                parts.append(f"{kind} {fraction * 100:g} %" + (f" ({extra})" if extra else ""))
        return ", ".join(parts) or "none"

    def learned_count(self) -> int:
        """Number of nodes driven by an attacker policy (``adversaries.learned``)."""
        return round(self.adversary(LEARNED).fraction * self.nodes)

    def with_learned_as(self, kind: str) -> Scenario:
        """This scenario with the ``learned`` fraction given to the scripted ``kind`` instead (its
        parameters as they are, its fraction increased): the scripted reference of an attack."""
        if kind not in ADVERSARY_KINDS:
            known = ", ".join(ADVERSARY_KINDS)
            raise ScenarioError(f"scenario: unknown scripted kind '{kind}', expected one of {known}")
        share = self.adversary(LEARNED).fraction
        params = msgspec.to_builtins(self.adversary(kind))
        params["fraction"] = params["fraction"] + share
        return self.replace(name=f"{self.name}@{kind}", adversaries={LEARNED: 0.0, kind: params})

    def turned_count(self) -> int:
        """Number of honest nodes that ``dynamics.turn_dishonest`` turns into blackholes."""
        turn = self.dynamics.turn_dishonest
        return round(turn.fraction * self.nodes) if turn else 0

    def honest_count(self) -> int:
        """Number of honest nodes (the agents)."""
        return self.nodes - sum(self.adversary_counts().values())

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (round-trips through :func:`as_scenario`)."""
        return msgspec.to_builtins(self)

    def replace(self, **changes: Any) -> Scenario:
        """A validated copy with top-level keys changed (nested keys as dicts are merged)."""
        data = self.to_dict()
        for key, value in changes.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        return as_scenario(data)


def _check(cond: bool, key: str, reason: str) -> None:
    if not cond:
        raise ScenarioError(f"scenario key '{key}': {reason}")


def _validate(s: Scenario) -> Scenario:
    _check(s.nodes >= 4, "nodes", f"must be at least 4, got {s.nodes}")
    _check(s.nodes <= MAX_NODES, "nodes", f"must be at most {MAX_NODES}, got {s.nodes}")
    t = s.topology
    _check(2 <= t.mean_degree <= 8, "topology.mean_degree", f"must be in [2, 8], got {t.mean_degree}")
    _check(0 <= t.rewire_p <= 1, "topology.rewire_p", f"must be in [0, 1], got {t.rewire_p}")
    tr = s.traffic
    _check(tr.streams >= 1, "traffic.streams", f"must be at least 1, got {tr.streams}")
    _check(tr.streams <= s.nodes, "traffic.streams", f"must be at most nodes ({s.nodes}), got {tr.streams}")
    _check(tr.subscribers >= 1, "traffic.subscribers", f"must be at least 1, got {tr.subscribers}")
    _check(0 < tr.load <= 4, "traffic.load", f"must be in (0, 4], got {tr.load}")
    _check(tr.deadline_slack >= 0, "traffic.deadline_slack", f"must be >= 0, got {tr.deadline_slack}")
    _check(tr.value > 0, "traffic.value", f"must be > 0, got {tr.value}")
    total = 0.0
    for key in ADVERSARY_KEYS:
        a = s.adversary(key)
        mapping = not isinstance(getattr(s.adversaries, key), (int, float))
        where = f"adversaries.{key}.fraction" if mapping else f"adversaries.{key}"
        _check(0 <= a.fraction <= 1, where, f"must be in [0, 1], got {a.fraction}")
        total += a.fraction
    grey, on_off = s.adversary("grey_hole"), s.adversary("on_off")
    p = grey.drop_probability
    _check(0 < p <= 1, "adversaries.grey_hole.drop_probability", f"must be in (0, 1], got {p}")
    _check(on_off.honest_steps >= 1, "adversaries.on_off.honest_steps", f"must be >= 1, got {on_off.honest_steps}")
    _check(on_off.attack_steps >= 1, "adversaries.on_off.attack_steps", f"must be >= 1, got {on_off.attack_steps}")
    q = s.adversary("selective").value_quantile
    _check(0 <= q < 1, "adversaries.selective.value_quantile", f"must be in [0, 1), got {q}")
    b = s.adversary("ballot_stuffer").drop_probability
    _check(0 <= b <= 1, "adversaries.ballot_stuffer.drop_probability", f"must be in [0, 1], got {b}")
    _check(s.gossip.period >= 1, "gossip.period", f"must be >= 1, got {s.gossip.period}")
    r = s.adversary("whitewasher").rejoin_after
    _check(r >= 1, "adversaries.whitewasher.rejoin_after", f"must be >= 1, got {r}")
    d = s.dynamics
    if d.turn_dishonest is not None:
        f, at = d.turn_dishonest.fraction, d.turn_dishonest.at_step
        _check(0 <= f <= 1, "dynamics.turn_dishonest.fraction", f"must be in [0, 1], got {f}")
        _check(at >= 0, "dynamics.turn_dishonest.at_step", f"must be >= 0, got {at}")
        total += f
    _check(total <= 0.9 + 1e-9, "adversaries", f"fractions must sum to at most 0.9, got {total:.3g}")
    if d.churn is not None:
        lp, rs = d.churn.leave_probability, d.churn.rejoin_steps
        _check(0 <= lp <= 0.5, "dynamics.churn.leave_probability", f"must be in [0, 0.5], got {lp}")
        _check(rs >= 1, "dynamics.churn.rejoin_steps", f"must be >= 1, got {rs}")
    if d.load_shift is not None:
        at, load = d.load_shift.at_step, d.load_shift.load
        _check(at >= 0, "dynamics.load_shift.at_step", f"must be >= 0, got {at}")
        _check(0 < load <= 4, "dynamics.load_shift.load", f"must be in (0, 4], got {load}")
    e = s.economy
    _check(e.base_cost > 0, "economy.base_cost", f"must be > 0, got {e.base_cost}")
    _check(e.overprice_factor >= 1, "economy.overprice_factor", f"must be >= 1, got {e.overprice_factor}")
    _check(e.queue_limit >= 1, "economy.queue_limit", f"must be >= 1, got {e.queue_limit}")
    _check(s.reward.welfare_weight >= 0, "reward.welfare_weight", f"must be >= 0, got {s.reward.welfare_weight}")
    _check(s.episode_steps >= 1, "episode_steps", f"must be >= 1, got {s.episode_steps}")
    _check(0 <= s.seed < 2**32, "seed", f"must be in [0, 2**32), got {s.seed}")
    honest = s.honest_count()
    _check(honest >= 2, "adversaries", f"must leave at least 2 honest nodes, got {honest}")
    return s


_PATH_RE = re.compile(r" - at `\$\.?([^`]*)`")


def as_scenario(spec: Scenario | dict | str | Path) -> Scenario:
    """A validated :class:`Scenario` from a Scenario, a dict, a shipped name or a YAML path."""
    if isinstance(spec, Scenario):
        return _validate(spec)
    if isinstance(spec, (str, Path)):
        return load_scenario(spec)
    if not isinstance(spec, dict):
        raise ScenarioError(f"scenario: expected a mapping, got {type(spec).__name__}")
    named = spec.get("adversaries")
    if isinstance(named, dict):  # naming adversaries sets every kind not named to 0 (no hidden defaults)
        spec = {**spec, "adversaries": {**dict.fromkeys(ADVERSARY_KEYS, 0.0), **named}}
    try:
        scenario = msgspec.convert(spec, type=Scenario)
    except msgspec.ValidationError as err:
        message = str(err)
        match = _PATH_RE.search(message)
        where = match.group(1) if match and match.group(1) else ""
        reason = _PATH_RE.sub("", message)
        unknown = re.match(r"Object contains unknown field `([^`]*)`", reason)
        if unknown:
            key = f"{where}.{unknown.group(1)}" if where else unknown.group(1)
            raise ScenarioError(f"scenario key '{key}': unknown key") from None
        choice = _CHOICES.get(where.rsplit(".", 1)[-1])
        if "Invalid enum value" in reason and choice:
            what, allowed = choice
            raise ScenarioError(
                f"scenario key '{where}': unknown {what}, expected one of {', '.join(allowed)}"
            ) from None
        raise ScenarioError(f"scenario key '{where or '(top level)'}': {reason[0].lower()}{reason[1:]}") from None
    return _validate(scenario)


def shipped_scenarios() -> list[str]:
    """Names of the scenarios shipped in ``conf/scenario/``."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def load_scenario(path_or_name: str | Path) -> Scenario:
    """Load a scenario from a shipped name (``conf/scenario/NAME.yaml``) or a YAML file path."""
    text_ref = str(path_or_name)
    path = Path(text_ref)
    if not path.suffix and (SCENARIO_DIR / f"{text_ref}.yaml").is_file() and "/" not in text_ref:
        path = SCENARIO_DIR / f"{text_ref}.yaml"
    if not path.exists():
        raise ScenarioError(
            f"scenario '{text_ref}': no such file or shipped scenario (shipped: {', '.join(shipped_scenarios())})"
        )
    if not path.is_file():  # a directory, a FIFO or a device: a read could fail, block or never end
        raise ScenarioError(f"scenario '{text_ref}': not a regular file")
    try:
        if path.stat().st_size > MAX_SCENARIO_BYTES:
            raise ScenarioError(f"scenario '{text_ref}': file larger than {MAX_SCENARIO_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except ScenarioError:
        raise
    except (OSError, UnicodeDecodeError) as err:
        raise ScenarioError(f"scenario '{text_ref}': cannot read file ({err.__class__.__name__}: {err})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ScenarioError(f"scenario '{text_ref}': not valid YAML{where}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ScenarioError(f"scenario '{text_ref}': expected a YAML mapping of keys, got {type(data).__name__}")
    data.setdefault("name", path.stem)
    return as_scenario(data)
