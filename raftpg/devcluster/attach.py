"""Rebuilding a LocalCluster from the node.yml files another process wrote, so that separate
short-lived commands (the benchmark adapter) can drive one cluster."""

from __future__ import annotations

from pathlib import Path

import yaml

from raftpg.devcluster.cluster import LocalCluster
from raftpg.devcluster.node import Node, NodePorts


def attach_cluster(base_dir: Path) -> LocalCluster:
    """Rebuild a cluster another process started from its node.yml files, so that separate
    short-lived commands (the benchmark adapter) can drive one cluster; raftpg PIDs come from
    each node's raftpg.pid."""
    configs = sorted(base_dir.glob("*/node.yml"))
    if not configs:
        raise FileNotFoundError(f"no node.yml under {base_dir}")
    docs = [yaml.safe_load(path.read_text()) for path in configs]
    first = docs[0]
    dcs = dict(first["bootstrap"]["dcs"])
    known = {"ttl", "loop_wait", "retry_timeout", "maximum_lag_on_failover", "primary_start_timeout",
             "synchronous_mode", "postgresql"}
    auth = first["restapi"]["authentication"]
    tls = first["restapi"].get("certfile") is not None
    cluster = LocalCluster(
        base_dir=base_dir, size=0, scope=first["scope"], ttl=dcs["ttl"], loop_wait=dcs["loop_wait"],
        retry_timeout=dcs["retry_timeout"], synchronous_mode=dcs["synchronous_mode"],
        parameters=dict(dcs["postgresql"]["parameters"]),
        dcs_extra={k: v for k, v in dcs.items() if k not in known},
        tags={doc["name"]: dict(doc.get("tags") or {}) for doc in docs},
        password=first["raft"]["password"], api_auth=(auth["username"], auth["password"]), tls=tls,
    )
    for path, doc in zip(configs, docs, strict=True):
        witness = bool(doc.get("witness"))
        postgresql = doc.get("postgresql") or {"listen": "127.0.0.1:0", "data_dir": str(path.parent / "pgdata")}
        cluster.nodes[doc["name"]] = Node(
            name=doc["name"],
            ports=NodePorts(raft=_port(doc["raft"]["self_addr"]), api=_port(doc["restapi"]["listen"]),
                            pg=_port(postgresql["listen"])),
            host=doc["restapi"]["connect_address"].rsplit(":", 1)[0],
            config_path=path,
            log_path=path.parent / "raftpg.log",
            data_dir=Path(postgresql["data_dir"]),
            raft_dir=Path(doc["raft"]["data_dir"]),
            tls=tls,
            witness=witness,
        )
    cluster.size = len(cluster.databases())
    cluster.witnesses = len(cluster.nodes) - cluster.size
    return cluster



def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])
