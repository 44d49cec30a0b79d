"""Config validation: every bad input has a test and a clear message naming its key."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from pysyncobj import SyncObjConf

from raftpg.config import (
    CLUSTER_WIDE_PARAMETERS,
    DOCS_RAFT_PASSWORD,
    MIN_TTL,
    RAFTPG_OWNED_PARAMETERS,
    Address,
    Auth,
    ConfigError,
    DynamicConfig,
    Settings,
    Tags,
    generate_raft_password,
    load_settings,
    parse_settings,
    sample_config,
    sections,
    validate_dynamic_config,
)
from raftpg.consensus.options import raft_timings
from raftpg.postgres import binaries
from raftpg.postgres.binaries import discover_bin_dir

pytestmark = pytest.mark.unit

STRONG = "Zq3-vT9x_Lm2Pw7Kc4Rn8Yb"
DELETE = object()


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """A directory that looks like PostgreSQL's bin, so tests do not depend on the host."""
    path = tmp_path / "pgbin"
    path.mkdir()
    (path / "pg_ctl").write_text("#!/bin/sh\n")
    return path


@pytest.fixture
def base(bin_dir: Path) -> dict[str, Any]:
    return {
        "scope": "demo",
        "name": "node1",
        "raft": {
            "self_addr": "127.0.0.1:5010",
            "partner_addrs": ["127.0.0.1:5011", "127.0.0.1:5012"],
            "data_dir": "/var/lib/raftpg/raft",
            "password": STRONG,
        },
        "restapi": {"listen": "127.0.0.1:8008"},
        "postgresql": {
            "listen": "127.0.0.1:5432",
            "data_dir": "/var/lib/postgresql/15/main",
            "bin_dir": str(bin_dir),
            "authentication": {
                "superuser": {"username": "postgres", "password": "pw1"},
                "replication": {"username": "replicator", "password": "pw2"},
            },
        },
    }


def with_value(data: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    """A deep copy of `data` with the dotted `path` set to `value` (or removed for DELETE)."""
    result = copy.deepcopy(data)
    *parents, leaf = path.split(".")
    node = result
    for part in parents:
        node = node.setdefault(part, {})
    if value is DELETE:
        node.pop(leaf, None)
    else:
        node[leaf] = value
    return result


def problems_of(data: dict[str, Any], env: dict[str, str] | None = None) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        parse_settings(data, env={} if env is None else env)
    return info.value.problems


def assert_problem(problems: tuple[str, ...], expected: str) -> None:
    assert any(expected in problem for problem in problems), f"{expected!r} not in {problems}"


# --------------------------------------------------------------------------- valid input


def test_minimal_config_loads_with_typed_fields_and_defaults(base: dict[str, Any], bin_dir: Path) -> None:
    settings = parse_settings(base, env={})
    assert isinstance(settings, Settings)
    assert settings.scope == "demo" and settings.name == "node1"
    assert settings.raft.self_addr == Address("127.0.0.1", 5010)
    assert settings.raft.partner_addrs == (Address("127.0.0.1", 5011), Address("127.0.0.1", 5012))
    assert settings.raft.data_dir == Path("/var/lib/raftpg/raft")
    assert settings.raft.password == STRONG
    assert settings.restapi.connect_address == settings.restapi.listen
    assert settings.restapi.authentication is None
    assert settings.restapi.verify_client == "none"
    assert settings.restapi.url == "http://127.0.0.1:8008"
    assert settings.postgresql.connect_address == Address("127.0.0.1", 5432)
    assert settings.postgresql.bin_dir == bin_dir
    assert settings.postgresql.superuser == Auth("postgres", "pw1")
    assert settings.postgresql.replication == Auth("replicator", "pw2")
    assert settings.postgresql.pg_hba == ()
    assert dict(settings.postgresql.parameters) == {}
    assert settings.bootstrap.dcs == DynamicConfig()
    assert settings.bootstrap.initdb == ()
    assert settings.tags == Tags()
    assert settings.watchdog.mode == "off" and settings.watchdog.device == Path("/dev/watchdog")
    assert settings.log.level == "INFO" and settings.log.format == "plain"
    assert settings.source is None and settings.warnings == ()


def test_settings_are_immutable(base: dict[str, Any]) -> None:
    base["postgresql"]["parameters"] = {"work_mem": "4MB"}
    settings = parse_settings(base, env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.postgresql.parameters["work_mem"] = "8MB"  # type: ignore[index]
    with pytest.raises(TypeError):
        settings.bootstrap.dcs.parameters["x"] = "1"  # type: ignore[index]
    assert STRONG not in repr(settings)


def test_full_config_values(base: dict[str, Any], tmp_path: Path) -> None:
    data = copy.deepcopy(base)
    data["restapi"] = {
        "listen": "0.0.0.0:8443",
        "connect_address": "192.0.2.10:8443",
        "authentication": {"username": "admin", "password": "s3cret"},
        "certfile": str(tmp_path / "c.pem"),
        "keyfile": str(tmp_path / "k.pem"),
        "cafile": str(tmp_path / "ca.pem"),
        "verify_client": "Optional",
    }
    data["postgresql"].update(
        listen="0.0.0.0:5432",
        connect_address="192.0.2.10:5432",
        socket_dir="/tmp",
        parameters={"work_mem": "4MB", "fsync": False, "random_page_cost": 1.1, "max_parallel_workers": 4},
        pg_hba=["host all all 192.0.2.0/24 scram-sha-256"],
    )
    data["bootstrap"] = {"initdb": ["data-checksums", {"encoding": "UTF8"}, "--locale=C"]}
    data["tags"] = {"nofailover": True, "failover_priority": 3, "replicatefrom": "node2"}
    data["watchdog"] = {"mode": "automatic", "safety_margin": 2}
    data["log"] = {"level": "warn", "format": "json"}
    settings = parse_settings(data, env={})
    assert settings.restapi.url == "https://192.0.2.10:8443"
    assert settings.restapi.verify_client == "optional"
    assert settings.restapi.authentication == Auth("admin", "s3cret")
    assert settings.postgresql.socket_dir == Path("/tmp")
    assert dict(settings.postgresql.parameters) == {
        "work_mem": "4MB",
        "fsync": "off",
        "random_page_cost": "1.1",
        "max_parallel_workers": "4",
    }
    assert settings.bootstrap.initdb == ("--data-checksums", "--encoding=UTF8", "--locale=C")
    assert settings.tags.to_dict() == {
        "nofailover": True,
        "failover_priority": 3,
        "noloadbalance": False,
        "clonefrom": False,
        "nosync": False,
        "replicatefrom": "node2",
    }
    assert settings.watchdog.mode == "automatic" and settings.watchdog.safety_margin == 2.0
    assert settings.log.level == "WARNING" and settings.log.format == "json"


def test_empty_optional_paths_mean_unset(base: dict[str, Any]) -> None:
    restapi = {"listen": "127.0.0.1:8008", "certfile": "", "keyfile": "", "cafile": ""}
    data = with_value(base, "restapi", restapi)
    settings = parse_settings(data, env={"RAFTPG_RESTAPI__CAFILE": ""})
    assert settings.restapi.certfile is None and settings.restapi.cafile is None
    assert settings.restapi.url == "http://127.0.0.1:8008"


def test_yaml_off_is_understood_for_modes(base: dict[str, Any]) -> None:
    data = with_value(base, "watchdog", {"mode": False})
    data["bootstrap"] = {"dcs": {"synchronous_mode": True}}
    settings = parse_settings(data, env={})
    assert settings.watchdog.mode == "off"
    assert settings.bootstrap.dcs.synchronous_mode == "on"


def test_socket_dir_default(base: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sections, "_DEFAULT_SOCKET_DIR", tmp_path)
    assert parse_settings(base, env={}).postgresql.socket_dir == tmp_path
    monkeypatch.setattr(sections, "_DEFAULT_SOCKET_DIR", tmp_path / "missing")
    assert parse_settings(base, env={}).postgresql.socket_dir == Path("/var/lib/postgresql/15")


def test_bin_dir_is_discovered_when_not_given(
    base: dict[str, Any], bin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sections, "discover_bin_dir", lambda: bin_dir)
    settings = parse_settings(with_value(base, "postgresql.bin_dir", DELETE), env={})
    assert settings.postgresql.bin_dir == bin_dir


def test_missing_bin_dir_is_an_error_when_discovery_fails(
    base: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sections, "discover_bin_dir", lambda: None)
    problems = problems_of(with_value(base, "postgresql.bin_dir", DELETE))
    assert_problem(problems, "postgresql.bin_dir: not set and no PostgreSQL found")


def test_discover_bin_dir_prefers_newest_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for version, has_pg_ctl in (("9.6", True), ("15", True), ("16", False)):
        path = tmp_path / version / "bin"
        path.mkdir(parents=True)
        if has_pg_ctl:
            (path / "pg_ctl").write_text("")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(binaries, "PG_LIB_ROOT", tmp_path)
    assert discover_bin_dir() == tmp_path / "15" / "bin"
    monkeypatch.setattr(binaries, "PG_LIB_ROOT", tmp_path / "nothing")
    assert discover_bin_dir() is None


def test_discover_bin_dir_on_this_host() -> None:
    found = discover_bin_dir()
    if found is None:
        pytest.skip("no PostgreSQL installed here")
    assert (found / "pg_ctl").is_file()


# --------------------------------------------------------------------------- sample config


def test_sample_config_loads(tmp_path: Path, bin_dir: Path) -> None:
    text = sample_config("node2", scope="prod", bin_dir=bin_dir)
    assert sum(1 for line in text.splitlines() if line.lstrip().startswith("#")) > 30
    path = tmp_path / "raftpg.yml"
    path.write_text(text)
    settings = load_settings(path, env={})
    assert settings.name == "node2" and settings.scope == "prod"
    assert settings.source == path
    assert settings.bootstrap.dcs.synchronous_mode == "quorum"
    assert len(settings.raft.password) >= 32
    assert settings.restapi.authentication is not None
    assert settings.bootstrap.initdb == ("--data-checksums", "--encoding=UTF8")
    assert settings.postgresql.bin_dir == bin_dir
    assert settings.warnings == ()


def test_sample_config_passwords_are_fresh_and_discovery_is_used(tmp_path: Path) -> None:
    first, second = sample_config(), sample_config()
    assert first != second
    if discover_bin_dir() is None:
        pytest.skip("no PostgreSQL installed here")
    path = tmp_path / "raftpg.yml"
    path.write_text(first)
    assert load_settings(path, env={}).postgresql.bin_dir == discover_bin_dir()


def test_sample_config_with_ipv6_host(tmp_path: Path, bin_dir: Path) -> None:
    path = tmp_path / "raftpg.yml"
    path.write_text(sample_config(host="::1", partner_addrs=("[::1]:5011",), bin_dir=bin_dir))
    settings = load_settings(path, env={})
    assert str(settings.raft.self_addr) == "[::1]:5010"
    assert settings.restapi.url == "http://[::1]:8008"


def test_generated_password_is_strong_and_unique(base: dict[str, Any]) -> None:
    passwords = {generate_raft_password() for _ in range(20)}
    assert len(passwords) == 20
    for password in passwords:
        assert len(password) >= 32
        parse_settings(with_value(base, "raft.password", password), env={})


# --------------------------------------------------------------------------- environment


def test_environment_overrides_file(base: dict[str, Any]) -> None:
    env = {
        "RAFTPG_NAME": "node9",
        "RAFTPG_RAFT__PARTNER_ADDRS": "127.0.0.1:6001, [::1]:6002",
        "RAFTPG_RAFT__PASSWORD": "91827364550192837465",
        "RAFTPG_TAGS__NOFAILOVER": "true",
        "RAFTPG_TAGS__FAILOVER_PRIORITY": "5",
        "RAFTPG_BOOTSTRAP__DCS__TTL": "30",
        "RAFTPG_BOOTSTRAP__DCS__POSTGRESQL__PARAMETERS__WORK_MEM": "64MB",
        "RAFTPG_BOOTSTRAP__INITDB": "data-checksums,encoding=UTF8",
        "RAFTPG_POSTGRESQL__PG_HBA": "host all a,b 127.0.0.1/32 trust\nlocal all all peer",
        "RAFTPG_restapi__Listen": "127.0.0.1:9008",
        "RAFTPG_LOG__LEVEL": "debug",
        "RAFTPG_WATCHDOG__MODE": "off",
        "RAFTPG_CONFIG": "/etc/raftpg.yml",
        "OTHER": "ignored",
    }
    settings = parse_settings(base, env=env)
    assert settings.name == "node9"
    assert settings.raft.partner_addrs == (Address("127.0.0.1", 6001), Address("::1", 6002))
    assert settings.raft.password == "91827364550192837465"
    assert settings.tags.nofailover is True and settings.tags.failover_priority == 5
    assert settings.bootstrap.dcs.ttl == 30.0
    assert settings.bootstrap.dcs.parameters["work_mem"] == "64MB"
    assert settings.bootstrap.initdb == ("--data-checksums", "--encoding=UTF8")
    assert settings.postgresql.pg_hba == ("host all a,b 127.0.0.1/32 trust", "local all all peer")
    assert settings.restapi.listen == Address("127.0.0.1", 9008)
    assert settings.restapi.connect_address == Address("127.0.0.1", 9008)
    assert settings.log.level == "DEBUG"
    assert settings.watchdog.mode == "off"
    assert base["name"] == "node1", "the caller's data must not be modified"


def test_environment_defaults_to_os_environ(base: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAFTPG_SCOPE", "fromenv")
    assert parse_settings(base).scope == "fromenv"


def test_environment_can_supply_required_settings(base: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text(json.dumps(with_value(base, "raft.password", DELETE)))
    settings = load_settings(path, env={"RAFTPG_RAFT__PASSWORD": STRONG})
    assert settings.raft.password == STRONG


def test_environment_problems_name_the_variable(base: dict[str, Any]) -> None:
    problems = problems_of(
        base,
        env={
            "RAFTPG_TAGS__NOFAILOVER": "maybe",
            "RAFTPG_RAFT__PARTNER_ADDRS": "nohost",
            "RAFTPG_RAFT__": "x",
        },
    )
    assert_problem(problems, "tags.nofailover: must be true or false, got string 'maybe' (set by environment "
                   "variable RAFTPG_TAGS__NOFAILOVER)")  # fmt: skip
    assert_problem(problems, "(set by environment variable RAFTPG_RAFT__PARTNER_ADDRS)")
    assert_problem(problems, "RAFTPG_RAFT__: malformed environment variable name")


def test_environment_unknown_nested_key_is_an_error(base: dict[str, Any]) -> None:
    problems = problems_of(base, env={"RAFTPG_RAFT__PASWORD": STRONG})
    assert_problem(problems, "raft.pasword: unknown key, did you mean 'password'?")


# --------------------------------------------------------------------------- every bad input

BAD_INPUTS: list[tuple[str, object, str]] = [
    # unknown keys, with a suggestion
    ("restapi.lisen", "127.0.0.1:1", "restapi.lisen: unknown key, did you mean 'listen'?"),
    ("tags.nofailvoer", True, "tags.nofailvoer: unknown key, did you mean 'nofailover'?"),
    ("raft.zzz", 1, "raft.zzz: unknown key (known keys: data_dir, partner_addrs, password, self_addr)"),
    ("etcd3", {"hosts": "x"}, "etcd3: unknown key: raftpg keeps the cluster state in its own Raft"),
    ("bootstrap.dcs.tll", 10, "bootstrap.dcs.tll: unknown key, did you mean 'ttl'?"),
    # wrong types
    ("raft.data_dir", 5, "raft.data_dir: must be a string, got integer"),
    ("raft.partner_addrs", "127.0.0.1:5011", "raft.partner_addrs: must be a list of host:port, got string"),
    ("raft.partner_addrs", [5011], "raft.partner_addrs[0]: must be a host:port string, got integer"),
    ("tags", ["nofailover"], "tags: must be a mapping, got list"),
    ("restapi.authentication", "admin:pw", "restapi.authentication: must be a mapping, got string"),
    ("postgresql.parameters", ["work_mem=4MB"], "postgresql.parameters: must be a mapping, got list"),
    ("postgresql.parameters", {"work_mem": [1]}, "postgresql.parameters.work_mem: must be a string, number"),
    ("postgresql.parameters", {"bad name": 1}, "postgresql.parameters: 'bad name' is not a valid PostgreSQL"),
    ("postgresql.pg_hba", "host all all", "postgresql.pg_hba: must be a list, got string"),
    ("postgresql.pg_hba", ["ok line", 3], "postgresql.pg_hba[1]: must be a non-empty string, got 3"),
    ("bootstrap.dcs.ttl", "10", "bootstrap.dcs.ttl: must be a number, got string '10'"),
    ("bootstrap.dcs.loop_wait", True, "bootstrap.dcs.loop_wait: must be a number, got boolean"),
    ("bootstrap.dcs.ttl", float("inf"), "bootstrap.dcs.ttl: must be a finite number, got inf"),
    ("bootstrap.dcs.maximum_lag_on_failover", 1.5, "maximum_lag_on_failover: must be an integer"),
    ("bootstrap.dcs.pause", "yes", "bootstrap.dcs.pause: must be true or false, got string 'yes'"),
    ("bootstrap.initdb", "data-checksums", "bootstrap.initdb: must be a list of options, got string"),
    ("bootstrap.initdb", [{"a": 1, "b": 2}], "bootstrap.initdb[0]: must be an option name or a"),
    ("bootstrap.initdb", ["pgdata=/x"], "bootstrap.initdb[0]: --pgdata is passed by raftpg itself"),
    ("bootstrap.initdb", [{"encoding": [1]}], "bootstrap.initdb[0]: value of encoding must be a string or"),
    ("bootstrap.initdb", ["Bad Option"], "bootstrap.initdb[0]: 'Bad Option' is not an initdb option name"),
    # missing required settings
    ("scope", DELETE, "scope: required setting is missing"),
    ("name", DELETE, "name: required setting is missing"),
    ("name", "", "name: must not be empty"),
    ("raft.self_addr", DELETE, "raft.self_addr: required setting is missing"),
    ("raft.data_dir", DELETE, "raft.data_dir: required setting is missing"),
    ("raft.password", DELETE, "raft.password: required setting is missing"),
    ("raft", DELETE, "raft.password: required setting is missing"),
    ("restapi.listen", DELETE, "restapi.listen: required setting is missing"),
    ("postgresql.listen", DELETE, "postgresql.listen: required setting is missing"),
    ("postgresql.data_dir", DELETE, "postgresql.data_dir: required setting is missing"),
    ("postgresql.authentication.superuser", DELETE, "postgresql.authentication.superuser: required setting"),
    ("postgresql.authentication.replication", DELETE, "postgresql.authentication.replication: required"),
    ("postgresql.authentication.replication", {"password": "x"},
     "postgresql.authentication.replication.username: required setting is missing"),
    # weak raft passwords
    ("raft.password", "abc123xyz", "raft.password: must be at least 16 characters"),
    ("raft.password", "secret", "raft.password: must be at least 16 characters"),
    ("raft.password", "Password12345678", "raft.password: is a well-known sample password"),
    ("raft.password", "change-me-change-me!", "raft.password: is a well-known sample password"),
    ("raft.password", DOCS_RAFT_PASSWORD, "raft.password: is a well-known sample password"),
    ("raft.password", "x" * 40, "raft.password: is a repeated pattern"),
    ("raft.password", "abcdabcdabcdabcd", "raft.password: is a repeated pattern"),
    ("raft.password", 1234567890123456789, "raft.password: must be a string, got integer"),
    # bad addresses and ports
    ("raft.self_addr", "nohost", "raft.self_addr: 'nohost' has no port; expected host:port"),
    ("raft.self_addr", ":5010", "raft.self_addr: host is empty"),
    ("raft.self_addr", "127.0.0.1:0", "raft.self_addr: port 0 is out of range 1-65535"),
    ("raft.self_addr", "127.0.0.1:65536", "raft.self_addr: port 65536 is out of range 1-65535"),
    ("raft.self_addr", "127.0.0.1:http", "raft.self_addr: port 'http' is not a number"),
    ("raft.self_addr", "::1:5010", "raft.self_addr: write an IPv6 address in brackets"),
    ("raft.self_addr", "[nothex]:5010", "raft.self_addr: 'nothex' in brackets is not an IPv6 address"),
    ("raft.self_addr", "[::1]5010", "raft.self_addr: '[::1]5010' is not of the form [ipv6]:port"),
    ("raft.self_addr", "a b:5010", "raft.self_addr: 'a b' is not a valid host name or address"),
    ("raft.self_addr", "0.0.0.0:5010", "raft.self_addr: must be an address other members can connect to"),
    ("raft.partner_addrs", ["127.0.0.1:99999"], "raft.partner_addrs[0]: port 99999 is out of range"),
    ("restapi.listen", "localhost", "restapi.listen: 'localhost' has no port"),
    ("postgresql.connect_address", "0.0.0.0:5432", "postgresql.connect_address: must be an address other"),
    # names
    ("name", "node 1", "name: may contain only letters, digits, '_', '.' and '-', got 'node 1'"),
    ("scope", "démo", "scope: may contain only letters, digits"),
    ("scope", 7, "scope: must be a string, got integer"),
    # partners
    ("raft.partner_addrs", ["127.0.0.1:5011", "127.0.0.1:5010"], "partner_addrs: contains raft.self_addr"),
    ("raft.partner_addrs", ["127.0.0.1:5011", "127.0.0.1:5011"],
     "raft.partner_addrs: 127.0.0.1:5011 is listed more than once"),
    ("raft.partner_addrs", ["LOCALHOST:5011", "localhost:5011"], "is listed more than once"),
    # paths
    ("raft.data_dir", "raft", "raft.data_dir: must be an absolute path, got 'raft'"),
    ("postgresql.data_dir", "", "postgresql.data_dir: must not be empty"),
    ("raft.data_dir", "/var/lib/postgresql/15/main/raft", "raft.data_dir: must not be inside postgresql"),
    ("raft.data_dir", "/var/lib/postgresql/15/main", "raft.data_dir: must not be inside postgresql.data_dir"),
    ("postgresql.bin_dir", "/nonexistent/bin", "postgresql.bin_dir: /nonexistent/bin contains no pg_ctl"),
    # REST API
    ("restapi.listen", "192.0.2.10:8008", "restapi.authentication: required because restapi.listen"),
    ("restapi.listen", "0.0.0.0:8008", "restapi.connect_address: required because listen host 0.0.0.0"),
    ("restapi.authentication", {"username": "admin"}, "restapi.authentication.password: required setting"),
    ("restapi.authentication", {"username": "a", "password": "b", "pasword": "c"},
     "restapi.authentication.pasword: unknown key, did you mean 'password'?"),
    ("restapi.certfile", "/etc/raftpg/cert.pem", "restapi.keyfile: required when restapi.certfile is set"),
    ("restapi.keyfile", "/etc/raftpg/key.pem", "restapi.certfile: required when restapi.keyfile is set"),
    ("restapi.verify_client", "sometimes", "restapi.verify_client: must be one of none, optional, required"),
    ("restapi.verify_client", "required", "restapi.verify_client: required needs TLS"),
    ("restapi.verify_client", "optional", "restapi.cafile: required to verify client certificates"),
    # PostgreSQL
    ("postgresql.listen", "0.0.0.0:5432", "postgresql.connect_address: required because listen host 0.0.0.0"),
    ("postgresql.listen", "*:5432", "postgresql.connect_address: required because listen host *"),
    ("restapi.listen", "127.0.0.1:5432", "postgresql.listen: port 5432 is also used by restapi.listen"),
    ("raft.self_addr", "127.0.0.1:8008", "restapi.listen: port 8008 is also used by raft.self_addr"),
    # dynamic configuration in bootstrap.dcs
    ("bootstrap.dcs", [], "bootstrap.dcs: must be a mapping, got list"),
    ("bootstrap.dcs.ttl", 2, f"bootstrap.dcs.ttl: must be at least {MIN_TTL:g} seconds"),
    ("bootstrap.dcs.ttl", 0, "bootstrap.dcs.ttl: must be greater than 0"),
    ("bootstrap.dcs", {"ttl": 10, "loop_wait": 5, "retry_timeout": 3},
     "bootstrap.dcs.ttl: loop_wait + 2*retry_timeout (5 + 2*3) must not exceed ttl (10)"),
    ("bootstrap.dcs.retry_timeout", -1, "bootstrap.dcs.retry_timeout: must be greater than 0, got -1"),
    ("bootstrap.dcs.synchronous_mode", "sometimes", "dcs.synchronous_mode: must be one of off, on, quorum"),
    ("bootstrap.dcs.synchronous_node_count", 0, "dcs.synchronous_node_count: must be at least 1, got 0"),
    ("bootstrap.dcs", {"primary_start_timeout": 3, "master_start_timeout": 3},
     "bootstrap.dcs.master_start_timeout: old name of primary_start_timeout"),
    ("bootstrap.dcs.postgresql", {"parameters": {"wal_level": "minimal"}},
     "bootstrap.dcs.postgresql.parameters.wal_level: must be replica or logical, got 'minimal'"),
    ("bootstrap.dcs.postgresql", {"use_pg_rewnd": True}, "did you mean 'use_pg_rewind'?"),
    ("bootstrap.dcs.slots", {"Bad-Slot": {"type": "physical"}}, "slot name 'Bad-Slot' may contain only"),
    ("bootstrap.dcs.slots", {"s1": {"type": "logical", "plugin": "pgoutput"}},
     "bootstrap.dcs.slots.s1.database: required setting is missing"),
    ("bootstrap.dcs.slots", {"s1": {"type": "physical", "plugin": "pgoutput"}},
     "bootstrap.dcs.slots.s1.plugin: is only for logical slots"),
    ("bootstrap.dcs.slots", {"s1": {"type": "weird"}}, "dcs.slots.s1.type: must be one of physical"),
    ("bootstrap.dcs.slots", ["s1"], "bootstrap.dcs.slots: must be a mapping of slot name"),
    # tags
    ("tags.nofailover", "yes", "tags.nofailover: must be true or false, got string 'yes'"),
    ("tags.failover_priority", "high", "tags.failover_priority: must be an integer, got string 'high'"),
    ("tags.failover_priority", -1, "tags.failover_priority: must be at least 0, got -1"),
    ("tags.nosync", 1, "tags.nosync: must be true or false, got integer 1"),
    ("tags.replicatefrom", 5, "tags.replicatefrom: must be a string, got integer"),
    ("tags.replicatefrom", "node1", "tags.replicatefrom: cannot be this member's own name"),
    # watchdog and log
    ("watchdog.mode", "maybe", "watchdog.mode: must be one of off, automatic, required, got 'maybe'"),
    ("watchdog.mode", True, "watchdog.mode: must be one of off, automatic, required, got true"),
    ("watchdog.safety_margin", -1, "watchdog.safety_margin: must be at least 0"),
    ("watchdog", {"mode": "required", "safety_margin": 10}, "watchdog.safety_margin: must be less than"),
    ("log.level", "verbose", "log.level: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got"),
    ("log.format", "xml", "log.format: must be one of plain, json, got 'xml'"),
]


@pytest.mark.parametrize(
    ("path", "value", "expected"), BAD_INPUTS, ids=[f"{p}={v!r}" for p, v, _ in BAD_INPUTS]
)
def test_bad_input_is_reported_with_its_key(
    base: dict[str, Any], path: str, value: object, expected: str
) -> None:
    assert_problem(problems_of(with_value(base, path, value)), expected)


@pytest.mark.parametrize("name", sorted(CLUSTER_WIDE_PARAMETERS))
def test_local_parameters_refuse_cluster_wide_ones(base: dict[str, Any], name: str) -> None:
    problems = problems_of(with_value(base, "postgresql.parameters", {name: "1"}))
    assert_problem(problems, f"postgresql.parameters.{name}: must be equal on every member: set it in")
    assert_problem(problems, "bootstrap.dcs.postgresql.parameters")


@pytest.mark.parametrize("name", sorted(RAFTPG_OWNED_PARAMETERS))
def test_parameters_refuse_raftpg_owned_ones(base: dict[str, Any], name: str) -> None:
    local = problems_of(with_value(base, "postgresql.parameters", {name.upper(): "x"}))
    assert_problem(local, f"postgresql.parameters.{name.upper()}: is managed by raftpg")
    dynamic = problems_of(with_value(base, "bootstrap.dcs.postgresql", {"parameters": {name: "x"}}))
    assert_problem(dynamic, f"bootstrap.dcs.postgresql.parameters.{name}: is managed by raftpg")


def test_cluster_wide_parameters_are_fine_in_dynamic_config(base: dict[str, Any]) -> None:
    params = {"max_connections": 200, "wal_level": "logical", "track_commit_timestamp": True}
    settings = parse_settings(with_value(base, "bootstrap.dcs.postgresql", {"parameters": params}), env={})
    assert settings.bootstrap.dcs.parameters["max_connections"] == "200"
    assert settings.bootstrap.dcs.parameters["track_commit_timestamp"] == "on"


def test_all_problems_are_reported_together(base: dict[str, Any]) -> None:
    data = with_value(base, "raft.password", "short")
    data = with_value(data, "restapi.lisen", "x")
    data = with_value(data, "bootstrap.dcs.ttl", 1)
    data = with_value(data, "name", DELETE)
    with pytest.raises(ConfigError) as info:
        parse_settings(data, env={})
    problems = info.value.problems
    assert len(problems) == 4, problems
    for expected in ("raft.password:", "restapi.lisen:", "bootstrap.dcs.ttl:", "name:"):
        assert_problem(problems, expected)
        assert expected in str(info.value)


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(["scope"], env={})  # type: ignore[arg-type]
    assert info.value.problems == ("configuration: must be a mapping at the top level, got list",)


# --------------------------------------------------------------------------- files


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text("scope: demo\nname: node1\n  oops: indented\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}:3:"), problem
    assert info.value.source == path and str(path) in str(info.value)


def test_duplicate_yaml_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "dup.yml"
    path.write_text("scope: demo\nname: node1\nraft:\n  password: a\n  password: b\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert info.value.problems == (f"{path}:5:3: duplicate key 'password'",)


def test_unreadable_and_empty_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yml"
    with pytest.raises(ConfigError) as info:
        load_settings(missing, env={})
    assert info.value.problems == (f"{missing}: cannot read: No such file or directory",)
    empty = tmp_path / "empty.yml"
    empty.write_text("")
    with pytest.raises(ConfigError) as info:
        load_settings(str(empty), env={})
    assert_problem(info.value.problems, "scope: required setting is missing")
    assert info.value.source == empty


# --------------------------------------------------------------------------- dynamic configuration


def test_dynamic_config_round_trips_through_json() -> None:
    original = DynamicConfig.from_dict(
        {
            "ttl": 6,
            "loop_wait": 1,
            "retry_timeout": 2.5,
            "maximum_lag_on_failover": 0,
            "primary_start_timeout": 0,
            "postgresql": {
                "parameters": {"max_connections": 50, "hot_standby_feedback": True},
                "use_pg_rewind": False,
                "use_slots": False,
                "remove_data_directory_on_rewind_failure": True,
            },
            "synchronous_mode": "quorum",
            "synchronous_mode_strict": True,
            "synchronous_node_count": 2,
            "check_timeline": True,
            "slots": {"cdc": {"type": "logical", "database": "app", "plugin": "pgoutput"}, "archiver": None},
            "member_slots_ttl": 60,
            "pause": True,
        }
    )
    assert original.permanent_slots["archiver"] == {"type": "physical"}
    assert original.parameters["max_slot_wal_keep_size"] == original.max_slot_wal_keep_size == "8GB"
    again = DynamicConfig.from_dict(json.loads(json.dumps(original.to_dict())))
    assert again == original
    assert original.to_dict()["ttl"] == 6 and original.to_dict()["retry_timeout"] == 2.5
    assert DynamicConfig.from_dict(DynamicConfig().to_dict()) == DynamicConfig()


def test_dynamic_config_defaults_and_aliases() -> None:
    config_ = DynamicConfig.from_dict({"master_start_timeout": 12, "synchronous_mode": False})
    assert config_.primary_start_timeout == 12.0 and config_.synchronous_mode == "off"
    assert DynamicConfig.from_dict({"synchronous_mode": "ON"}).synchronous_mode == "on"
    assert DynamicConfig.from_dict({}) == DynamicConfig()
    assert DynamicConfig().parameters == {"max_slot_wal_keep_size": "8GB"}
    custom = DynamicConfig.from_dict({"postgresql": {"parameters": {"max_slot_wal_keep_size": "-1"}}})
    assert custom.max_slot_wal_keep_size == "-1" and custom.parameters["max_slot_wal_keep_size"] == "-1"
    assert isinstance(custom.parameters, MappingProxyType)


def test_validate_dynamic_config_warns_about_ignored_patroni_keys() -> None:
    config_, warnings = validate_dynamic_config(
        {
            "ttl": 30,
            "standby_cluster": {"host": "x"},
            "failsafe_mode": True,
            "max_timelines_history": 10,
            "ignore_slots": [],
            "postgresql": {"pg_hba": ["host all all all md5"], "use_slots": True},
        }
    )
    assert config_.ttl == 30.0
    ignored = ["standby_cluster", "failsafe_mode", "max_timelines_history", "ignore_slots"]
    ignored.append("postgresql.pg_hba")
    for key in ignored:
        assert any(w.startswith(f"{key}: Patroni setting ignored by raftpg") for w in warnings), key
    assert validate_dynamic_config({"ttl": 30})[1] == ()


def test_validate_dynamic_config_errors_have_unprefixed_keys() -> None:
    with pytest.raises(ConfigError) as info:
        validate_dynamic_config(
            {"tll": 10, "synchronous_node_count": 0, "postgresql": {"parameters": {"port": 1}}}
        )
    assert_problem(info.value.problems, "tll: unknown key, did you mean 'ttl'?")
    assert_problem(info.value.problems, "synchronous_node_count: must be at least 1")
    assert_problem(info.value.problems, "postgresql.parameters.port: is managed by raftpg")
    with pytest.raises(ConfigError):
        DynamicConfig.from_dict({"ttl": 1})


def test_ignored_keys_in_bootstrap_dcs_become_settings_warnings(base: dict[str, Any]) -> None:
    settings = parse_settings(with_value(base, "bootstrap.dcs", {"failsafe_mode": True}), env={})
    assert len(settings.warnings) == 1
    assert settings.warnings[0].startswith("bootstrap.dcs.failsafe_mode: Patroni setting ignored")


# --------------------------------------------------------------------------- small types


def test_address_parse_and_format() -> None:
    assert Address.parse(" 10.1.2.3:5432 ", "k") == Address("10.1.2.3", 5432)
    ipv6 = Address.parse("[::1]:5432", "k")
    assert ipv6 == Address("::1", 5432) and str(ipv6) == "[::1]:5432"
    assert str(Address("db.example", 1)) == "db.example:1"
    assert Address.parse(str(ipv6), "k") == ipv6
    assert ipv6.is_loopback and Address("localhost", 1).is_loopback and Address("127.1.2.3", 1).is_loopback
    assert not Address("192.0.2.1", 1).is_loopback and not Address("db.example", 1).is_loopback
    assert Address("0.0.0.0", 1).is_wildcard and Address("::", 1).is_wildcard
    with pytest.raises(ValueError, match=r"^my\.key: port 0 is out of range 1-65535$"):
        Address.parse("h:0", "my.key")


def test_tags_from_dict() -> None:
    tags = Tags(nofailover=True, failover_priority=0, replicatefrom="node3")
    assert Tags.from_dict(tags.to_dict()) == tags
    assert "replicatefrom" not in Tags().to_dict()
    with pytest.raises(ConfigError) as info:
        Tags.from_dict({"nofailover": "no", "bogus": 1})
    assert_problem(info.value.problems, "tags.nofailover: must be true or false")
    assert_problem(info.value.problems, "tags.bogus: unknown key")


def test_config_error_message_lists_every_problem() -> None:
    error = ConfigError(["a: bad", "b: worse"], source=Path("/etc/raftpg.yml"))
    assert error.problems == ("a: bad", "b: worse")
    assert str(error) == "invalid configuration in /etc/raftpg.yml:\n  - a: bad\n  - b: worse"


# --------------------------------------------------------------------------- Raft timings


def test_raft_timings_are_accepted_by_pysyncobj_and_fit_in_the_lease() -> None:
    previous: dict[str, float] | None = None
    for ttl in (MIN_TTL, 4, 5, 10, 30, 120):
        timings = raft_timings(ttl)
        assert set(timings) == {
            "raftMinTimeout",
            "raftMaxTimeout",
            "appendEntriesPeriod",
            "connectionTimeout",
            "connectionRetryTime",
            "leaderFallbackTimeout",
        }
        SyncObjConf(**timings).validate()
        assert timings["appendEntriesPeriod"] >= 0.05
        assert timings["raftMinTimeout"] == pytest.approx(4 * timings["appendEntriesPeriod"])
        # detect a dead leader, one more election round, one reconnect: well within half a lease
        recovery = 2 * timings["raftMaxTimeout"] + timings["connectionRetryTime"]
        assert recovery < ttl / 2
        assert timings["leaderFallbackTimeout"] < ttl
        if previous is not None:
            assert all(timings[key] >= previous[key] for key in timings)
        previous = timings


def test_raft_timings_refuse_short_ttl() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        raft_timings(MIN_TTL - 0.5)


@pytest.mark.parametrize(
    ("data", "start_timeout"),
    [
        ({}, 30.0),
        ({"synchronous_mode": "off"}, 30.0),
        ({"synchronous_mode": "on"}, 0.0),
        ({"synchronous_mode": "quorum"}, 0.0),
        ({"synchronous_mode": "quorum", "primary_start_timeout": 12}, 12.0),
        ({"synchronous_mode": "quorum", "primary_start_timeout": None}, 0.0),
        ({"synchronous_mode": "off", "master_start_timeout": 0}, 0.0),
    ],
)
def test_primary_start_timeout_default_follows_the_mode(data: dict[str, Any], start_timeout: float) -> None:
    """Unset: fail over to a synchronous standby at once in on/quorum, restart in place when async."""
    config_ = DynamicConfig.from_dict(data)
    assert config_.start_timeout == start_timeout
    assert DynamicConfig.from_dict(json.loads(json.dumps(config_.to_dict()))) == config_


def test_unset_start_timeout_follows_a_later_mode_change() -> None:
    stored = DynamicConfig.from_dict({"synchronous_mode": "off"}).to_dict()
    assert "primary_start_timeout" not in stored
    assert DynamicConfig.from_dict({**stored, "synchronous_mode": "quorum"}).start_timeout == 0.0


@pytest.mark.parametrize(
    ("data", "fallback"),
    [
        ({"ttl": 12}, 12.0),
        ({"ttl": 12, "synchronous_fallback_timeout": 20}, 20.0),
        ({"ttl": 12, "synchronous_fallback_timeout": 0}, 0.0),
    ],
)
def test_synchronous_fallback_timeout_defaults_to_ttl(data: dict[str, Any], fallback: float) -> None:
    config_ = DynamicConfig.from_dict(data)
    assert config_.fallback_timeout == fallback
    assert DynamicConfig.from_dict(json.loads(json.dumps(config_.to_dict()))) == config_


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"synchronous_fallback_timeout": -1}, "synchronous_fallback_timeout: must be at least 0, got -1"),
        ({"synchronous_fallback_timeout": "soon"}, "synchronous_fallback_timeout: must be a number"),
        ({"primary_start_timeout": -2}, "primary_start_timeout: must be at least 0, got -2"),
    ],
)
def test_bad_timeouts_are_refused(data: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        DynamicConfig.from_dict(data)
    assert any(problem in p for p in info.value.problems), info.value.problems


# --------------------------------------------------------------------------- callbacks


def test_callbacks_take_a_command_line_or_a_list(base: dict[str, Any]) -> None:
    base["postgresql"]["callbacks"] = {"on_start": "/usr/local/bin/notify --tag 'pg start'",
                                       "on_role_change": ["/usr/local/bin/vip", "--dev", "eth0"]}
    base["postgresql"]["callback_timeout"] = 5
    pg = parse_settings(base, env={}).postgresql
    assert dict(pg.callbacks) == {"on_start": ("/usr/local/bin/notify", "--tag", "pg start"),
                                  "on_role_change": ("/usr/local/bin/vip", "--dev", "eth0")}
    assert pg.callback_timeout == 5.0


def test_callbacks_default_to_none_and_thirty_seconds(base: dict[str, Any]) -> None:
    pg = parse_settings(base, env={}).postgresql
    assert dict(pg.callbacks) == {} and pg.callback_timeout == 30.0


@pytest.mark.parametrize("callbacks, expected", [
    ({"on_promote": "/bin/true"}, "postgresql.callbacks.on_promote: unknown key"),
    ({"on_start": ""}, "postgresql.callbacks.on_start: must not be empty"),
    ({"on_stop": "echo 'unclosed"}, "postgresql.callbacks.on_stop: cannot be split into words"),
    ({"on_reload": ["/bin/true", ""]}, "postgresql.callbacks.on_reload: must be a command line or a list"),
    ({"on_restart": 3}, "postgresql.callbacks.on_restart: must be a command line or a list"),
    ("/bin/true", "postgresql.callbacks: must be a mapping"),
])
def test_bad_callbacks_are_rejected_by_key(base: dict[str, Any], callbacks: object, expected: str) -> None:
    assert_problem(problems_of(with_value(base, "postgresql.callbacks", callbacks)), expected)


@pytest.mark.parametrize("timeout", [0, -1, "30s"])
def test_bad_callback_timeout_is_rejected(base: dict[str, Any], timeout: object) -> None:
    assert_problem(problems_of(with_value(base, "postgresql.callback_timeout", timeout)),
                   "postgresql.callback_timeout: must be")
