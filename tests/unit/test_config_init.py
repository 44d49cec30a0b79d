"""`raftpg config secrets` / `config init`: valid node.yml from flags, clear errors, no overwrite."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from raftpg.cli.cluster_secrets import ClusterSecrets, SecretsError
from raftpg.cli.main import main
from raftpg.cli.node_init import NodeInit, render
from raftpg.config import ConfigError, load_settings

pytestmark = pytest.mark.unit

BIN_DIR = Path("/usr/lib/postgresql/15/bin")


@pytest.fixture
def secrets_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert main(["config", "secrets"]) == 0
    path = tmp_path / "cluster-secrets.yml"
    path.write_text(capsys.readouterr().out)
    path.chmod(0o600)
    return path


def _init(tmp_path: Path, secrets_file: Path, *extra: str) -> int:
    return main(["config", "init", "--scope", "prod", "--name", "db1", "--self", "10.0.0.11",
                 "--peers", "10.0.0.12, 10.0.0.13", "--secrets", str(secrets_file),
                 "-o", str(tmp_path / "node.yml"), "--bin-dir", str(BIN_DIR),
                 "--data-dir", "/srv/pg", "--raft-dir", "/srv/raft", *extra])


def test_secrets_are_fresh_and_round_trip(secrets_file: Path) -> None:
    first = ClusterSecrets.load(secrets_file)
    second = ClusterSecrets.generate()
    assert first.raft_password != second.raft_password
    assert len(first.raft_password) >= 40
    assert ClusterSecrets.from_mapping(yaml.safe_load(first.to_yaml()), "x") == first
    assert {first.restapi.username, first.superuser.username, first.replication.username} == {
        "admin", "postgres", "replicator"}


def test_secrets_output_file_is_private_and_not_overwritten(tmp_path: Path) -> None:
    target = tmp_path / "s.yml"
    assert main(["config", "secrets", "-o", str(target)]) == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    before = target.read_text()
    assert main(["config", "secrets", "-o", str(target)]) == 1
    assert target.read_text() == before


@pytest.mark.skipif(not (BIN_DIR / "pg_ctl").is_file(), reason="PostgreSQL 15 server binaries not installed")
def test_init_writes_a_config_the_loader_accepts(tmp_path: Path, secrets_file: Path) -> None:
    assert _init(tmp_path, secrets_file) == 0
    path = tmp_path / "node.yml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    settings = load_settings(path, env={})
    secrets = ClusterSecrets.load(secrets_file)
    assert (settings.scope, settings.name) == ("prod", "db1")
    assert str(settings.raft.self_addr) == "10.0.0.11:5010"
    assert [str(a) for a in settings.raft.partner_addrs] == ["10.0.0.12:5010", "10.0.0.13:5010"]
    assert settings.raft.password == secrets.raft_password
    assert settings.restapi.authentication == secrets.restapi
    assert settings.postgresql.superuser == secrets.superuser
    assert settings.postgresql.replication == secrets.replication
    assert str(settings.postgresql.connect_address) == "10.0.0.11:5432"
    assert settings.postgresql.data_dir == Path("/srv/pg")
    assert settings.bootstrap.dcs.synchronous_mode == "quorum"


@pytest.mark.skipif(not (BIN_DIR / "pg_ctl").is_file(), reason="PostgreSQL 15 server binaries not installed")
def test_init_refuses_to_overwrite_without_force(tmp_path: Path, secrets_file: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "node.yml").write_text("keep me\n")
    assert _init(tmp_path, secrets_file) == 1
    assert "--force" in capsys.readouterr().err
    assert (tmp_path / "node.yml").read_text() == "keep me\n"
    assert _init(tmp_path, secrets_file, "--force") == 0
    assert load_settings(tmp_path / "node.yml", env={}).name == "db1"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--peers", ""], "list the other members"),
        (["--peers", "10.0.0.11,10.0.0.12"], "own address"),
        (["--self", "10.0.0.11:99999"], "out of range"),
        (["--name", "bad name!"], "name"),
        (["--peers", "10.0.0.12:x"], "not a number"),
    ],
)
def test_init_explains_bad_input_and_writes_nothing(tmp_path: Path, secrets_file: Path,
                                                    capsys: pytest.CaptureFixture[str],
                                                    args: list[str], expected: str) -> None:
    assert _init(tmp_path, secrets_file, *args) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "node.yml").exists()


def test_init_rejects_a_broken_secrets_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "s.yml"
    bad.write_text("raft_password: x\nrestapi: {username: admin}\n")
    assert _init(tmp_path, bad) == 2
    err = capsys.readouterr().err
    assert "restapi: needs a non-empty username and password" in err
    assert "superuser" in err


def test_secrets_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(SecretsError, match="cannot read"):
        ClusterSecrets.load(tmp_path / "missing.yml")
    (tmp_path / "list.yml").write_text("- a\n")
    with pytest.raises(SecretsError, match="expected a mapping"):
        ClusterSecrets.load(tmp_path / "list.yml")


def test_render_bracketed_ipv6_and_custom_ports() -> None:
    init = NodeInit(scope="s", name="n", self_host="[fd00::1]", peers=("[fd00::2]:6000", "fd00-3.example"),
                    secrets=ClusterSecrets.generate(), bin_dir=BIN_DIR, raft_port=6010, pg_port=6432)
    document = init.document()
    assert document["raft"]["self_addr"] == "[fd00::1]:6010"
    assert document["raft"]["partner_addrs"] == ["[fd00::2]:6000", "fd00-3.example:6010"]
    assert document["postgresql"]["connect_address"] == "[fd00::1]:6432"


def test_render_reports_every_loader_problem() -> None:
    init = NodeInit(scope="s", name="n", self_host="10.0.0.1", peers=("10.0.0.2",),
                    secrets=ClusterSecrets.generate(), bin_dir=Path("/nonexistent"), ttl=1.0)
    with pytest.raises(ConfigError) as caught:
        render(init)
    text = "\n".join(caught.value.problems)
    assert "bin_dir" in text
    assert "ttl" in text
