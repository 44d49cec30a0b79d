"""Local clusters with witness members, without starting them: the node files written, and a
cluster rebuilt from them (attach_cluster) knows which nodes are witnesses."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from raftpg.devcluster import LocalCluster, attach_cluster

pytestmark = pytest.mark.unit


def test_witness_nodes_get_a_witness_configuration(tmp_path: Path) -> None:
    cluster = LocalCluster(base_dir=tmp_path, size=2, witnesses=1)
    assert list(cluster.nodes) == ["node1", "node2", "witness1"]
    assert list(cluster.databases()) == ["node1", "node2"]
    doc = yaml.safe_load(cluster.nodes["witness1"].config_path.read_text())
    assert doc["witness"] is True and "postgresql" not in doc and "tags" not in doc
    assert "initdb" not in doc["bootstrap"] and doc["bootstrap"]["dcs"] == cluster.dcs()
    addrs = {name: cluster.raft_addr(node) for name, node in cluster.nodes.items()}
    assert sorted(doc["raft"]["partner_addrs"]) == sorted((addrs["node1"], addrs["node2"]))
    database = yaml.safe_load(cluster.nodes["node1"].config_path.read_text())
    assert "witness" not in database and addrs["witness1"] in database["raft"]["partner_addrs"]
    assert str(cluster.nodes["witness1"].ports.pg) not in cluster.dsn_any_primary()


def test_attach_recognises_witnesses(tmp_path: Path) -> None:
    LocalCluster(base_dir=tmp_path, size=2, witnesses=1)
    attached = attach_cluster(tmp_path)
    assert (attached.size, attached.witnesses) == (2, 1)
    assert [name for name, node in attached.nodes.items() if node.witness] == ["witness1"]
