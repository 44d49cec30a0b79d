"""The secrets every member of one cluster shares, generated once and read by `raftpg config init`.

One file instead of four hand-copied passwords: the Raft password (authenticates and encrypts
Raft), the REST API's basic-auth credentials and PostgreSQL's superuser and replication roles.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from raftpg.config import Auth, generate_raft_password

FILE_MODE = 0o600
_ROLES = ("restapi", "superuser", "replication")
_DEFAULT_USERS = {"restapi": "admin", "superuser": "postgres", "replication": "replicator"}


class SecretsError(Exception):
    """A secrets file that cannot be used; the message says which file and what is wrong."""


def _random_password() -> str:
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class ClusterSecrets:
    raft_password: str
    restapi: Auth
    superuser: Auth
    replication: Auth

    @classmethod
    def generate(cls) -> ClusterSecrets:
        return cls(
            raft_password=generate_raft_password(),
            **{role: Auth(_DEFAULT_USERS[role], _random_password()) for role in _ROLES},
        )

    def to_yaml(self) -> str:
        lines = [
            "# raftpg cluster secrets: the same file for every member of the cluster.",
            "# Whoever reads it can join the Raft cluster and act as PostgreSQL superuser:",
            "# keep it mode 0600, copy it to each host over ssh, delete it once every node.yml is written.",
            f"raft_password: {json.dumps(self.raft_password)}",
        ]
        for role in _ROLES:
            auth: Auth = getattr(self, role)
            lines += [f"{role}:", f"  username: {json.dumps(auth.username)}",
                      f"  password: {json.dumps(auth.password)}"]
        return "\n".join(lines) + "\n"

    @classmethod
    def from_mapping(cls, data: Any, source: str) -> ClusterSecrets:
        if not isinstance(data, dict):
            raise SecretsError(f"{source}: expected a mapping (the output of `raftpg config secrets`)")
        problems: list[str] = []
        raft_password = data.get("raft_password")
        if not isinstance(raft_password, str) or not raft_password:
            problems.append("raft_password: missing or not a string")
        auths: dict[str, Auth] = {}
        for role in _ROLES:
            entry = data.get(role)
            username = entry.get("username") if isinstance(entry, dict) else None
            password = entry.get("password") if isinstance(entry, dict) else None
            if isinstance(username, str) and username and isinstance(password, str) and password:
                auths[role] = Auth(username, password)
            else:
                problems.append(f"{role}: needs a non-empty username and password")
        unknown = sorted(set(data) - {"raft_password", *_ROLES})
        if unknown:
            problems.append(f"unknown key(s): {', '.join(map(str, unknown))}")
        if problems:
            raise SecretsError(f"{source}: " + "; ".join(problems))
        return cls(raft_password=str(raft_password), **auths)

    @classmethod
    def load(cls, path: Path) -> ClusterSecrets:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SecretsError(f"{path}: cannot read: {exc}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SecretsError(f"{path}: not valid YAML: {exc}") from None
        return cls.from_mapping(data, str(path))
