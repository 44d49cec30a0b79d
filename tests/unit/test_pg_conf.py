"""Pure parts of the PostgreSQL layer: configuration rendering, LSNs, pg_controldata parsing."""

from pathlib import Path

import pytest

from raftpg.config import Address, Auth, PostgresSettings
from raftpg.postgres import conf
from raftpg.postgres.controldata import parse_controldata
from raftpg.postgres.lsn import format_lsn, parse_lsn

pytestmark = pytest.mark.unit


def settings(**overrides: object) -> PostgresSettings:
    values: dict[str, object] = {
        "listen": Address("127.0.0.1", 5433),
        "connect_address": Address("127.0.0.1", 5433),
        "data_dir": Path("/srv/pg/data"),
        "bin_dir": Path("/usr/lib/postgresql/15/bin"),
        "socket_dir": Path("/srv/pg/sock"),
        "superuser": Auth("postgres", "su-secret"),
        "replication": Auth("replicator", "repl-secret"),
        "parameters": {},
        "pg_hba": (),
    }
    values.update(overrides)
    return PostgresSettings(**values)  # type: ignore[arg-type]


# -- parameter precedence ----------------------------------------------------------------------


def test_defaults_are_there_for_replication_and_rewind() -> None:
    params = conf.build_parameters(settings(), {})
    assert params["wal_level"] == "replica"
    assert params["hot_standby"] == "on"
    assert params["wal_log_hints"] == "on"
    assert params["max_wal_senders"] == "10"
    assert params["max_replication_slots"] == "10"
    assert params["wal_keep_size"] == "128MB"
    assert params["max_slot_wal_keep_size"] == "8GB"
    assert params["hot_standby_feedback"] == "on"
    assert "wal_sender_timeout" in params and "wal_receiver_timeout" in params


def test_owned_values_come_from_settings() -> None:
    params = conf.build_parameters(settings(), {}, synchronous_standby_names='ANY 1 ("n2","n3")')
    assert params["listen_addresses"] == "127.0.0.1"
    assert params["port"] == "5433"
    assert params["unix_socket_directories"] == "/srv/pg/sock"
    assert params["synchronous_standby_names"] == 'ANY 1 ("n2","n3")'
    assert conf.build_parameters(settings(), {})["synchronous_standby_names"] == ""


def test_precedence_defaults_then_dynamic_then_local() -> None:
    dynamic = {"wal_keep_size": "256MB", "work_mem": "8MB", "shared_buffers": "64MB"}
    local = {"work_mem": "16MB"}
    params = conf.build_parameters(settings(parameters=local), dynamic)
    assert params["wal_keep_size"] == "256MB"  # dynamic beats default
    assert params["work_mem"] == "16MB"  # local beats dynamic
    assert params["shared_buffers"] == "64MB"


def test_owned_parameters_win_over_dynamic_and_local() -> None:
    dynamic = {"port": "1", "hot_standby": "off", "synchronous_standby_names": "*", "primary_conninfo": "x"}
    local = {"PORT": "2", "listen_addresses": "*", "primary_slot_name": "evil", "hba_file": "/tmp/x"}
    params = conf.build_parameters(settings(parameters=local), dynamic, synchronous_standby_names="n2")
    assert params["port"] == "5433"
    assert params["hot_standby"] == "on"
    assert params["listen_addresses"] == "127.0.0.1"
    assert params["synchronous_standby_names"] == "n2"
    assert "primary_conninfo" not in params
    assert "primary_slot_name" not in params
    assert "hba_file" not in params


def test_local_cannot_change_cluster_wide_parameters() -> None:
    params = conf.build_parameters(
        settings(parameters={"max_connections": "500", "wal_level": "minimal"}), {"max_connections": "200"}
    )
    assert params["max_connections"] == "200"
    assert params["wal_level"] == "replica"


def test_parameter_names_are_normalised_and_checked() -> None:
    params = conf.build_parameters(settings(), {"Work_Mem": "4MB", "auto_explain.log_min_duration": "1s"})
    assert params["work_mem"] == "4MB"
    assert params["auto_explain.log_min_duration"] == "1s"
    with pytest.raises(ValueError, match="parameter name"):
        conf.build_parameters(settings(), {"work_mem = 1\nfsync": "off"})


# -- postgresql.conf -----------------------------------------------------------------------------


def test_conf_includes_base_first_and_quotes_values() -> None:
    text = conf.render_postgresql_conf({"work_mem": "4MB", "search_path": "\"$user\", it's"})
    lines = text.splitlines()
    assert lines[0].startswith(conf.MANAGED_MARKER)
    assert lines[1] == "include_if_exists 'postgresql.base.conf'"
    assert "search_path = '\"$user\", it''s'" in lines
    assert "work_mem = '4MB'" in lines
    assert "primary_conninfo" not in text


def test_conf_quoting_escapes_backslashes_and_refuses_line_breaks() -> None:
    assert conf.quote_conf_value("a\\b'c") == "'a\\\\b''c'"
    with pytest.raises(ValueError):
        conf.quote_conf_value("on\nfsync = off")
    for value in ["", "plain", "it's", "back\\slash", "\\'mixed''\\\\"]:
        assert conf.unquote_conf_value(conf.quote_conf_value(value)) == value


def test_conf_refuses_upstream_settings_as_parameters() -> None:
    with pytest.raises(ValueError, match="primary_conninfo"):
        conf.render_postgresql_conf({"primary_conninfo": "host=x"})


def test_standby_conf_has_conninfo_and_slot_and_reads_back() -> None:
    conninfo = conf.primary_conninfo(Address("10.0.0.1", 5432), Auth("repl", "pa'ss\\word"), "node-2")
    text = conf.render_postgresql_conf({"port": "5433"}, primary_conninfo=conninfo, primary_slot_name="node_2")
    assert "primary_slot_name = 'node_2'" in text.splitlines()
    assert conf.read_standby_settings(text) == (conninfo, "node_2")
    assert conf.read_standby_settings(conf.render_postgresql_conf({"port": "5433"})) == (None, None)


def test_primary_conninfo_fields_and_quoting() -> None:
    from psycopg.conninfo import conninfo_to_dict

    conninfo = conf.primary_conninfo(Address("10.0.0.1", 5432), Auth("repl", "pa'ss\\word"), "node 2")
    assert conninfo_to_dict(conninfo) == {
        "host": "10.0.0.1", "port": "5432", "user": "repl", "password": "pa'ss\\word", "application_name": "node 2",
        "connect_timeout": "5", "keepalives": "1", "keepalives_idle": "5", "keepalives_interval": "2",
        "keepalives_count": "3",
    }


def test_primary_conninfo_leaves_out_an_empty_password() -> None:
    conninfo = conf.primary_conninfo(Address("h", 1), Auth("repl", ""), "n")
    assert "password" not in conninfo


def test_conninfo_is_parsed_back_by_libpq() -> None:
    from psycopg.conninfo import conninfo_to_dict

    conninfo = conf.primary_conninfo(Address("10.0.0.1", 5432), Auth("re pl", "p'a\\ss w"), "n-2")
    parsed = conninfo_to_dict(conninfo)
    assert parsed["user"] == "re pl"
    assert parsed["password"] == "p'a\\ss w"
    assert parsed["application_name"] == "n-2"
    assert parsed["port"] == "5432"


# -- pg_hba.conf ---------------------------------------------------------------------------------


def test_pg_hba_gives_raftpg_access_first_then_extra_lines() -> None:
    text = conf.render_pg_hba(Auth("postgres", "s"), Auth("replicator", "r"), ["host all app 10.0.0.0/8 md5"])
    lines = text.splitlines()
    assert lines[0].startswith(conf.MANAGED_MARKER)
    assert lines[1:] == [
        'local all "postgres" scram-sha-256',
        'local replication "postgres" scram-sha-256',
        'host replication "replicator" all scram-sha-256',
        'host all "postgres" all scram-sha-256',
        "host all app 10.0.0.0/8 md5",
        "local all all scram-sha-256",
        "host all all all scram-sha-256",
    ]


def test_pg_hba_without_passwords_uses_peer_and_leaves_remote_access_to_extra_lines() -> None:
    lines = conf.render_pg_hba(Auth("postgres", ""), Auth("replicator", ""), []).splitlines()
    assert 'local all "postgres" peer' in lines
    assert not any(line.startswith("host replication") for line in lines)
    assert not any(line.startswith('host all "postgres"') for line in lines)


def test_pg_hba_refuses_injection() -> None:
    with pytest.raises(ValueError):
        conf.render_pg_hba(Auth('post"gres', "s"), Auth("r", "r"))
    with pytest.raises(ValueError):
        conf.render_pg_hba(Auth("postgres", "s"), Auth("r", "r"), ["host all all all trust\nlocal all all trust"])


# -- slot names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("member", "slot"),
    [
        ("node1", "node1"),
        ("Node-2", "node_2"),
        ("db.example.com", "db_example_com"),
        ("pg 3", "pg_3"),
        ("x" * 80, "x" * 63),
    ],
)
def test_slot_name_for(member: str, slot: str) -> None:
    assert conf.slot_name_for(member) == slot
    assert conf.slot_name_for(slot) == slot  # idempotent: a slot name maps to itself


def test_slot_name_for_refuses_empty() -> None:
    with pytest.raises(ValueError):
        conf.slot_name_for("")


# -- LSNs and pg_controldata ---------------------------------------------------------------------


def test_lsn_round_trip() -> None:
    assert parse_lsn("0/0") == 0
    assert parse_lsn("0/3000148") == 0x3000148
    assert parse_lsn("16/B374D848") == (0x16 << 32) | 0xB374D848
    for value in (0, 1, 0x3000148, (0xFFFF << 32) | 0xABC):
        assert parse_lsn(format_lsn(value)) == value
    with pytest.raises(ValueError):
        parse_lsn("3000148")


CONTROLDATA = """\
pg_control version number:            1300
Catalog version number:               202209061
Database system identifier:           7310925338127646739
Database cluster state:               shut down in recovery
pg_control last modified:             Tue 25 Nov 2025 11:00:00 PM UTC
Latest checkpoint location:           0/5000060
Latest checkpoint's REDO location:    0/5000028
Latest checkpoint's REDO WAL file:    000000020000000000000005
Latest checkpoint's TimeLineID:       2
Latest checkpoint's PrevTimeLineID:   1
Latest checkpoint's full_page_writes: on
Minimum recovery ending location:     0/5000110
Min recovery ending loc's timeline:   2
Backup start location:                0/0
wal_level setting:                    replica
wal_log_hints setting:                on
Data page checksum version:           0
"""


def test_parse_controldata() -> None:
    data = parse_controldata(CONTROLDATA)
    assert data.system_identifier == 7310925338127646739
    assert data.cluster_state == "shut down in recovery"
    assert data.clean_shutdown
    assert data.timeline == 2
    assert data.prev_timeline == 1
    assert data.checkpoint_lsn == 0x5000060
    assert data.redo_lsn == 0x5000028
    assert data.min_recovery_end_lsn == 0x5000110
    assert data.min_recovery_end_timeline == 2
    assert data.wal_log_hints is True
    assert data.data_checksums is False


def test_parse_controldata_names_a_missing_field() -> None:
    with pytest.raises(ValueError, match="TimeLineID"):
        parse_controldata(CONTROLDATA.replace("Latest checkpoint's TimeLineID", "Something else"))


@pytest.mark.parametrize(("password", "method"), [("s", "scram-sha-256"), ("", "peer")])
def test_locked_pg_hba_lets_in_only_the_daemon(password: str, method: str) -> None:
    """A primary started in place accepts nobody but raftpg itself until its fence is armed."""
    lines = conf.render_locked_pg_hba(Auth("postgres", password)).splitlines()
    assert lines[0].startswith(conf.MANAGED_MARKER)
    assert lines[1:] == [f'local all "postgres" {method}']
