"""A witness member's configuration (`witness: true`): what it needs, what it refuses, and how the
database members' loaders tell a witness's file apart."""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from raftpg.cli.ctl.session import open_session
from raftpg.cli.main import main
from raftpg.config import (
    Address,
    Auth,
    ConfigError,
    Settings,
    WitnessSettings,
    load_member_settings,
    load_settings,
    parse_member_settings,
    parse_settings,
)
from raftpg.config.witness import WITNESS_TAGS

pytestmark = pytest.mark.unit

STRONG = "Zq3-vT9x_Lm2Pw7Kc4Rn8Yb"
WITNESS: dict[str, Any] = {
    "scope": "prod",
    "name": "witness1",
    "witness": True,
    "raft": {
        "self_addr": "10.0.0.13:5010",
        "partner_addrs": ["10.0.0.11:5010", "10.0.0.12:5010"],
        "data_dir": "/var/lib/raftpg/raft",
        "password": STRONG,
    },
    "restapi": {"listen": "10.0.0.13:8008", "authentication": {"username": "admin", "password": "api-secret"}},
    "bootstrap": {"dcs": {"ttl": 10, "loop_wait": 2, "retry_timeout": 4}},
}


def witness(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(WITNESS)
    data.update(changes)
    return data


def problems_of(data: dict[str, Any], env: dict[str, str] | None = None) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        parse_member_settings(data, env={} if env is None else env)
    return info.value.problems


def assert_problem(problems: tuple[str, ...], expected: str) -> None:
    assert any(expected in problem for problem in problems), f"{expected!r} not in {problems}"


def test_a_witness_needs_no_postgresql_section() -> None:
    settings = parse_member_settings(WITNESS, env={})
    assert isinstance(settings, WitnessSettings)
    assert (settings.scope, settings.name) == ("prod", "witness1")
    assert settings.raft.self_addr == Address("10.0.0.13", 5010)
    assert settings.raft.partner_addrs == (Address("10.0.0.11", 5010), Address("10.0.0.12", 5010))
    assert settings.restapi.url == "http://10.0.0.13:8008"
    assert settings.bootstrap.dcs.ttl == 10 and settings.bootstrap.initdb == ()
    assert settings.tags == WITNESS_TAGS
    assert WITNESS_TAGS.nofailover and WITNESS_TAGS.nosync and WITNESS_TAGS.noloadbalance


def test_witness_false_is_a_database_member_and_needs_postgresql() -> None:
    problems = problems_of(witness(witness=False))
    assert_problem(problems, "postgresql.listen: required setting is missing")


@pytest.mark.parametrize("value", ["yes", 1, "true", [True]])
def test_witness_must_be_a_boolean(value: object) -> None:
    assert_problem(problems_of(witness(witness=value)), "witness: must be true or false")


@pytest.mark.parametrize(
    ("section", "value", "why"),
    [
        ("postgresql", {"listen": "10.0.0.13:5432"}, "a witness runs no PostgreSQL"),
        ("tags", {"nofailover": True}, "which a witness takes no part in"),
        ("watchdog", {"mode": "required"}, "never runs"),
    ],
)
def test_database_only_sections_are_refused(section: str, value: object, why: str) -> None:
    problems = problems_of(witness(**{section: value}))
    assert_problem(problems, f"{section}: not allowed with witness: true")
    assert_problem(problems, why)


def test_initdb_is_refused() -> None:
    data = witness(bootstrap={"dcs": {"ttl": 10}, "initdb": ["data-checksums"]})
    assert_problem(problems_of(data), "bootstrap.initdb: not allowed with witness: true")


@pytest.mark.parametrize(
    ("section", "key", "expected"),
    [
        ("raft", "password", "raft.password: required setting is missing"),
        ("raft", "self_addr", "raft.self_addr: required setting is missing"),
        ("restapi", "listen", "restapi.listen: required setting is missing"),
    ],
)
def test_raft_and_restapi_stay_required(section: str, key: str, expected: str) -> None:
    data = witness()
    del data[section][key]
    assert_problem(problems_of(data), expected)


def test_restapi_reachable_beyond_loopback_needs_authentication() -> None:
    data = witness()
    del data["restapi"]["authentication"]
    assert_problem(problems_of(data), "restapi.authentication: required")


def test_a_weak_raft_password_is_refused() -> None:
    data = witness()
    data["raft"]["password"] = "secret"
    assert_problem(problems_of(data), "raft.password: must be at least 16 characters")


def test_raft_and_api_on_one_port_are_refused() -> None:
    data = witness()
    data["restapi"]["listen"] = "10.0.0.13:5010"
    assert_problem(problems_of(data), "restapi.listen: port 5010 is also used by raft.self_addr")


def test_a_bad_ttl_is_reported_like_a_database_members() -> None:
    assert_problem(problems_of(witness(bootstrap={"dcs": {"ttl": 1}})), "bootstrap.dcs.ttl: must be at least")


def test_the_environment_can_make_a_member_a_witness() -> None:
    data = witness()
    del data["witness"]
    assert isinstance(parse_member_settings(data, env={"RAFTPG_WITNESS": "true"}), WitnessSettings)


def test_database_member_loaders_refuse_a_witness_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(WITNESS, env={})
    assert_problem(info.value.problems, "configures a witness member")
    path = tmp_path / "witness.yml"
    path.write_text(yaml.safe_dump(WITNESS))
    with pytest.raises(ConfigError) as loaded:
        load_settings(path, env={})
    assert_problem(loaded.value.problems, f"{path}: witness: true: this file configures a witness member")
    settings = load_member_settings(path, env={})
    assert isinstance(settings, WitnessSettings) and settings.source == path


def test_load_member_settings_still_loads_a_database_member(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pg_ctl").write_text("#!/bin/sh\n")
    data = witness(witness=False, postgresql={
        "listen": "10.0.0.13:5432", "data_dir": "/var/lib/postgresql/15/main", "bin_dir": str(bin_dir),
        "authentication": {"superuser": {"username": "postgres"}, "replication": {"username": "replicator"}},
    })
    path = tmp_path / "node.yml"
    path.write_text(yaml.safe_dump(data))
    assert isinstance(load_member_settings(path, env={}), Settings)


def test_config_init_witness_writes_a_witness_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "secrets", "-o", str(tmp_path / "secrets.yml")]) == 0
    output = tmp_path / "witness.yml"
    assert main(["config", "init", "--scope", "prod", "--name", "witness1", "--self", "10.0.0.13",
                 "--peers", "10.0.0.11,10.0.0.12", "--secrets", str(tmp_path / "secrets.yml"), "--ttl", "8",
                 "-o", str(output), "--witness"]) == 0
    assert "no PostgreSQL (witness" in capsys.readouterr().out
    document = yaml.safe_load(output.read_text())
    assert document["witness"] is True and "postgresql" not in document and "initdb" not in document["bootstrap"]
    settings = load_member_settings(output, env={})
    assert isinstance(settings, WitnessSettings)
    assert settings.raft.partner_addrs == (Address("10.0.0.11", 5010), Address("10.0.0.12", 5010))
    assert settings.bootstrap.dcs.ttl == 8 and settings.bootstrap.dcs.synchronous_mode == "quorum"
    assert main(["config", "validate", str(output)]) == 0
    assert "valid (scope prod, witness member witness1)" in capsys.readouterr().out


def test_run_refuses_quorum_recovery_on_a_witness(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "witness.yml"
    path.write_text(yaml.safe_dump(WITNESS))
    assert main(["run", "-c", str(path), "--recover-quorum", "--force"]) == 2
    assert "a witness has no PostgreSQL" in capsys.readouterr().err


def test_ctl_can_use_a_witness_configuration(tmp_path: Path) -> None:
    path = tmp_path / "witness.yml"
    path.write_text(yaml.safe_dump(WITNESS))
    args = argparse.Namespace(config=str(path), api=None, user=None, password=None, cafile=None, insecure=False,
                              timeout=5.0)
    session = open_session(args)
    assert session.bases == ["http://10.0.0.13:8008"]
    assert session.settings is None  # no PostgreSQL settings to take a superuser name from
    assert session.client.http.auth == Auth("admin", "api-secret")
