"""packaging/provision.sh run for real (as root, every path in a scratch directory, raftpg from
this checkout behind a stand-in for dist/raftpg): a witness host gets a configuration raftpg's
loader accepts as a witness's and the systemd unit, without a PostgreSQL package, a data
directory or a new OS user; a database host still gets its data directory in its node.yml.
The network-namespace hosts of tests/cluster/test_dist.py run the database path end to end."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from raftpg.cli.cluster_secrets import ClusterSecrets
from raftpg.config import Settings, WitnessSettings, load_member_settings

pytestmark = [
    pytest.mark.unit,
    pytest.mark.timeout(120),
    pytest.mark.skipif(os.geteuid() != 0, reason="provision.sh runs as root"),
]

CHECKOUT = Path(__file__).resolve().parents[2]
PROVISION = CHECKOUT / "packaging" / "provision.sh"
STUBBED = ("apt-get", "dpkg", "useradd", "systemctl")
"""Commands a witness's provisioning must not need: each stand-in records its call and fails."""


@dataclass(frozen=True)
class Host:
    root: Path
    secrets: ClusterSecrets
    calls: Path

    @property
    def config(self) -> Path:
        return self.root / "etc" / "node.yml"

    @property
    def prefix(self) -> Path:
        return self.root / "bin"

    @property
    def unit(self) -> Path:
        return self.root / "units" / "raftpg.service"

    @property
    def data_dir(self) -> Path:
        return self.root / "pg" / "15" / "main"

    @property
    def raft_dir(self) -> Path:
        return self.root / "raftpg" / "raft"


@pytest.fixture
def host(tmp_path: Path) -> Host:
    tmp_path.chmod(0o755)
    binary = tmp_path / "dist" / "raftpg"
    binary.parent.mkdir()
    binary.write_text(f'#!/bin/sh\nexec {sys.executable} -m raftpg.cli.main "$@"\n')
    binary.chmod(0o755)
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    calls = tmp_path / "calls.log"
    for name in STUBBED:
        stub = stubs / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> {calls}\nexit 1\n')
        stub.chmod(0o755)
    secrets = ClusterSecrets.generate()
    (tmp_path / "secrets.yml").write_text(secrets.to_yaml())
    (tmp_path / "secrets.yml").chmod(0o600)
    return Host(tmp_path, secrets, calls)


def provision(host: Host, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = ["bash", str(PROVISION), "--scope", "prod", "--self", "10.0.0.13", "--peers", "10.0.0.11,10.0.0.12",
            "--secrets", str(host.root / "secrets.yml"), "--binary", str(host.root / "dist" / "raftpg"),
            "--prefix", str(host.prefix), "--config", str(host.config), "--unit-dir", str(host.unit.parent),
            "--data-dir", str(host.data_dir), "--raft-dir", str(host.raft_dir), "--ttl", "5", "--no-systemd",
            *extra]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAFTPG_")},
           "PATH": f"{host.root / 'stubs'}:{os.environ['PATH']}", "PYTHONPATH": str(CHECKOUT)}
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=100, env=env,
                          check=False)


def test_a_witness_host_needs_no_postgresql(host: Host) -> None:
    done = provision(host, "--name", "witness1", "--witness")  # apt on: a witness must not use it
    assert done.returncode == 0, done.stdout + done.stderr
    assert not host.calls.exists(), host.calls.read_text()
    settings = load_member_settings(host.config, env={})
    assert isinstance(settings, WitnessSettings)
    assert (settings.scope, settings.name, str(settings.raft.self_addr)) == ("prod", "witness1", "10.0.0.13:5010")
    assert settings.raft.data_dir == host.raft_dir and settings.raft.password == host.secrets.raft_password
    assert settings.bootstrap.dcs.ttl == 5
    assert "witness member" in done.stdout  # `raftpg config validate` says what it read
    assert not host.data_dir.parent.exists()
    owner = pwd.getpwuid(host.config.stat().st_uid).pw_name
    assert owner == "postgres" and stat.S_IMODE(host.config.stat().st_mode) == 0o600
    assert host.raft_dir.parent.is_dir() and pwd.getpwuid(host.raft_dir.parent.stat().st_uid).pw_name == "postgres"
    unit = host.unit.read_text()
    assert f"ExecStart={host.prefix / 'raftpg'} run -c {host.config}" in unit and "User=postgres" in unit


def test_a_database_host_still_gets_its_data_directory(host: Host) -> None:
    done = provision(host, "--name", "node3", "--no-apt")
    assert done.returncode == 0, done.stdout + done.stderr
    settings = load_member_settings(host.config, env={})
    assert isinstance(settings, Settings)
    assert settings.postgresql.data_dir == host.data_dir and host.data_dir.parent.is_dir()
    assert host.unit.exists() and not host.calls.exists()
