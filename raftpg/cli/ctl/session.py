"""One `raftpg ctl` invocation's connection to the cluster and its terminal.

The session knows where the REST APIs are (from -c FILE or --api URL), how to authenticate,
and whether a human is there to answer prompts. Nothing here joins Raft: the cluster is seen
only through GET /cluster of whichever node answers first.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.prompt import Confirm, Prompt
from rich.text import Text

from raftpg.cli.ctl.client import (
    ApiClient,
    ApiError,
    CtlError,
    Response,
    Unreachable,
    UsageError,
    first_answer,
    join,
)
from raftpg.cli.ctl.model import ClusterView, ConnectionProblem, MemberView, group_problems, peer_problems
from raftpg.config import Auth, ConfigError, Settings, WitnessSettings, load_member_settings
from raftpg.http.client import TlsFiles
from raftpg.http.problems import FailureKind

USER_ENV = "RAFTPG_CTL_USER"
PASSWORD_ENV = "RAFTPG_CTL_PASSWORD"


def stdin_is_tty() -> bool:
    """Prompts need a person: without a terminal on stdin, commands refuse instead of hanging."""
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):
        return False


def normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    return url if "://" in url else f"http://{url}"


class Session:
    def __init__(self, client: ApiClient, bases: Sequence[str], *, settings: Settings | None = None,
                 interactive: bool | None = None) -> None:
        self.client = client
        self.bases = list(bases)
        self.settings = settings
        self.interactive = stdin_is_tty() if interactive is None else interactive
        self.out = Console(highlight=False, soft_wrap=True)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)

    # -- talking to the API -------------------------------------------------------------------

    @property
    def configured(self) -> bool:
        return bool(self.bases)

    def _need_bases(self) -> None:
        if not self.bases:
            raise UsageError("no REST API to talk to: give -c NODE.yml or --api URL")

    def get(self, path: str, timeout: float | None = None) -> Response:
        """GET from the first node that answers; that node is then asked first next time."""
        self._need_bases()
        base, response = first_answer(self.client, self.bases, path, timeout)
        if self.bases[0] != base:
            self.bases.remove(base)
            self.bases.insert(0, base)
        return response

    def send(self, method: str, path: str, body: Any = None, *, headers: Mapping[str, str] | None = None,
             timeout: float | None = None) -> Response:
        """An unsafe request to the node that last answered (never retried elsewhere: it may have applied)."""
        self._need_bases()
        return self.client.call(method, join(self.bases[0], path), body, headers=headers, timeout=timeout)

    def send_to(self, member: MemberView, method: str, path: str, body: Any = None,
                timeout: float | None = None) -> Response:
        return self.client.call(method, join(self.member_url(member), path), body, timeout=timeout)

    def member_url(self, member: MemberView) -> str:
        if not member.api_url:
            raise CtlError(f"member {member.name} publishes no REST API URL")
        return member.api_url

    def member_status(self, member: MemberView, timeout: float | None = None) -> dict[str, Any]:
        body = self.client.call("GET", join(self.member_url(member), "patroni"), timeout=timeout).body
        if not isinstance(body, dict):
            raise CtlError(f"{member.name}: /patroni did not answer a JSON object")
        return body

    def cluster(self, *, system_id: bool = False) -> ClusterView:
        scope = self.settings.scope if self.settings is not None else None
        view = ClusterView.from_json(self.get("cluster").body, scope=scope)
        if system_id:
            try:
                status = self.get("patroni").body
            except (ApiError, Unreachable):
                status = None
            if isinstance(status, dict) and status.get("database_system_identifier"):
                view = ClusterView(view.scope, view.members, view.paused, view.scheduled_switchover,
                                   str(status["database_system_identifier"]))
        return view

    def connection_problems(self, cluster: ClusterView) -> tuple[ConnectionProblem, ...]:
        """Members that fail for TLS or authentication reasons: what each member reports about
        its peers in /patroni, and what ctl itself meets asking them (short timeouts)."""
        sightings: list[tuple[str, str, str]] = []
        for member in cluster.members:
            if not member.api_url:
                continue
            try:
                status = self.member_status(member, timeout=min(2.0, self.client.timeout))
            except Unreachable as exc:
                if exc.kind is not FailureKind.UNREACHABLE:
                    sightings.append((member.name, f"{exc.kind.value}: {exc.reason}", "ctl"))
                continue
            except ApiError as exc:
                if exc.status in (401, 403):
                    sightings.append((member.name, f"{FailureKind.AUTH.value}: HTTP {exc.status}", "ctl"))
                continue
            except CtlError:
                continue
            sightings.extend((peer, text, member.name) for peer, text in peer_problems(status).items())
        return group_problems(sightings)

    def find_members(self, cluster: ClusterView, names: Sequence[str]) -> list[MemberView]:
        """The named members (all when none are named); an unknown name is an error."""
        if not names:
            return list(cluster.members)
        unknown = [n for n in names if cluster.member(n) is None]
        if unknown:
            raise CtlError(f"{', '.join(unknown)} not a member of cluster {cluster.scope} "
                           f"(members: {', '.join(cluster.names) or 'none'})")
        return [m for m in cluster.members if m.name in names]

    # -- talking to the operator --------------------------------------------------------------

    def print(self, text: str, style: str | None = None) -> None:
        self.out.print(Text(text, style=style or ""))

    def error(self, text: str) -> None:
        self.err.print(Text(text, style="red"))

    def confirm(self, force: bool, question: str) -> None:
        """Go on only with --force or a "yes" typed on a terminal; otherwise raise (never hang)."""
        if force:
            return
        if not self.interactive:
            raise CtlError(f"confirmation needed ({question}) but stdin is not a terminal; "
                           "pass --force to proceed")
        if not Confirm.ask(question, console=self.out):
            raise CtlError("aborted")

    def ask(self, question: str, *, choices: Sequence[str] | None = None, default: str = "") -> str:
        if not self.interactive:
            raise CtlError(f"{question}: no terminal to ask on; give it as an option")
        answer: str = Prompt.ask(question, console=self.out, choices=list(choices) if choices else None,
                                 default=default, show_default=bool(default))
        return answer.strip()


def open_session(args: argparse.Namespace) -> Session:
    """Build the session from -c / --api / --user / --password / TLS options (no I/O yet). A
    witness's configuration gives the REST API to talk to; commands that need PostgreSQL's
    settings (the superuser's name) then need them as options."""
    settings: Settings | WitnessSettings | None = None
    if getattr(args, "config", None):
        try:
            settings = load_member_settings(args.config)
        except ConfigError as exc:
            raise CtlError("\n  ".join([f"cannot use {args.config}:", *exc.problems])) from None
    bases = [normalize_url(u) for u in (getattr(args, "api", None) or [])]
    if not bases and settings is not None:
        bases = [settings.restapi.url]
    auth = _auth(args, settings)
    cafile = Path(args.cafile) if args.cafile else (settings.restapi.cafile if settings is not None else None)
    certfile = keyfile = None
    if settings is not None:
        if cafile is None:  # a self-signed API certificate is its own trust anchor
            cafile = settings.restapi.certfile
        if settings.restapi.verify_client == "required":
            certfile, keyfile = settings.restapi.certfile, settings.restapi.keyfile
    try:
        client = ApiClient(auth, timeout=args.timeout, tls=TlsFiles(cafile, certfile, keyfile, args.insecure))
    except (OSError, ValueError) as exc:
        raise CtlError(f"cannot set up TLS: {exc}") from None
    return Session(client, bases, settings=settings if isinstance(settings, Settings) else None)


def _auth(args: argparse.Namespace, settings: Settings | WitnessSettings | None) -> Auth | None:
    configured = settings.restapi.authentication if settings is not None else None
    user = args.user or os.environ.get(USER_ENV) or (configured.username if configured else None)
    password = args.password or os.environ.get(PASSWORD_ENV)
    if password is None and configured is not None and user == configured.username:
        password = configured.password
    if not user:
        return None
    return Auth(user, password or "")
