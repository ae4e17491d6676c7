"""Every kind of bad scenario input gets a one-line ``ScenarioError`` naming the key and the reason."""

from __future__ import annotations

import os

import pytest
import yaml

from envs.scenario import ScenarioError, as_scenario, load_scenario

# (case, dict given to as_scenario, words the message must contain)
BAD_DICTS = [
    ("unknown key", {"nodez": 16}, ["'nodez'", "unknown key"]),
    ("unknown nested key", {"topology": {"kind": "random_geometric", "degree": 3}}, ["topology.degree", "unknown"]),
    ("wrong type", {"nodes": "many"}, ["'nodes'", "int"]),
    ("wrong nested type", {"traffic": {"load": "high"}}, ["traffic.load", "float"]),
    ("unknown topology kind", {"topology": {"kind": "ring"}}, ["topology.kind", "unknown topology kind"]),
    ("fraction above 1", {"adversaries": {"blackhole": 1.5}}, ["adversaries.blackhole", "[0, 1]"]),
    ("fraction below 0", {"adversaries": {"overpricer": -0.1}}, ["adversaries.overpricer", "[0, 1]"]),
    (
        "fractions sum above 0.9",
        {"adversaries": {"bandwidth_liar": 0.4, "blackhole": 0.4, "overpricer": 0.2}},
        ["adversaries", "0.9"],
    ),
    ("fewer than 4 nodes", {"nodes": 3}, ["'nodes'", "at least 4"]),
    ("unknown payment mode", {"economy": {"payment": "upfront"}}, ["economy.payment", "on_delivery, per_hop"]),
    ("unknown receipts mode", {"economy": {"receipts": "maybe"}}, ["economy.receipts", "signed, unsigned"]),
    ("forger fraction above 1", {"adversaries": {"forger": 2.0}}, ["adversaries.forger", "[0, 1]"]),
    ("more than 16384 nodes", {"nodes": 16385}, ["'nodes'", "at most 16384", "16385"]),
    ("more streams than nodes", {"nodes": 8, "traffic": {"streams": 9}}, ["traffic.streams", "at most nodes (8)"]),
]
BAD_DICT_IDS = [case for case, _, _ in BAD_DICTS]


def assert_one_line(message: str, words: list[str]) -> None:
    assert message and "\n" not in message, message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


@pytest.mark.parametrize(("case", "spec", "words"), BAD_DICTS, ids=BAD_DICT_IDS)
def test_bad_dict(case, spec, words):
    with pytest.raises(ScenarioError) as info:
        as_scenario(spec)
    assert_one_line(str(info.value), words)


@pytest.mark.parametrize(("case", "spec", "words"), BAD_DICTS, ids=BAD_DICT_IDS)
def test_bad_yaml_file(case, spec, words, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert_one_line(str(info.value), words)


def bad_files(tmp_path):
    """(case, path, words) for the file-level failures."""
    not_yaml = tmp_path / "not_yaml.yaml"
    not_yaml.write_text("nodes: [1, 2\ntopology: {kind: \n")
    not_mapping = tmp_path / "list.yaml"
    not_mapping.write_text("- nodes\n- 16\n")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x81nodes: 16")
    directory = tmp_path / "a_directory.yaml"
    directory.mkdir()
    fifo = tmp_path / "a_fifo.yaml"
    os.mkfifo(fifo)  # a read of it would wait for a writer forever
    return [
        ("missing file", tmp_path / "missing.yaml", ["missing.yaml", "no such file"]),
        ("unknown shipped name", "no_such_scenario", ["no_such_scenario", "shipped"]),
        ("not YAML", not_yaml, ["not_yaml.yaml", "not valid YAML"]),
        ("YAML but not a mapping", not_mapping, ["list.yaml", "mapping"]),
        ("unreadable (not UTF-8)", binary, ["binary.yaml", "cannot read"]),
        ("unreadable (a directory)", directory, ["a_directory.yaml", "not a regular file"]),
        ("unreadable (a FIFO)", fifo, ["a_fifo.yaml", "not a regular file"]),
    ]


FILE_CASES = ["missing file", "unknown shipped name", "not YAML", "YAML but not a mapping"]
FILE_CASES += ["unreadable (not UTF-8)", "unreadable (a directory)", "unreadable (a FIFO)"]


@pytest.mark.parametrize("case", FILE_CASES)
def test_bad_file(case, tmp_path):
    _, path, words = next(c for c in bad_files(tmp_path) if c[0] == case)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert_one_line(str(info.value), words)


def test_good_inputs_round_trip(tmp_path):
    scenario = load_scenario("mixed_heavy")
    assert as_scenario(scenario.to_dict()) == scenario
    path = tmp_path / "copy.yaml"
    path.write_text(yaml.safe_dump(scenario.to_dict()))
    assert load_scenario(path) == scenario
    assert as_scenario(str(path)) == scenario
