"""raftpg.devcluster: N local raftpg nodes on loopback (cluster.py), for `raftpg demo`, the cluster
tests and the benchmarks; fault injection and network namespaces live with the tests (tests/cluster)."""

from raftpg.devcluster.attach import attach_cluster
from raftpg.devcluster.cluster import HostNetwork, LocalCluster
from raftpg.devcluster.node import Node, NodePorts
from raftpg.devcluster.ports import free_ports

__all__ = ["HostNetwork", "LocalCluster", "Node", "NodePorts", "attach_cluster", "free_ports"]
