"""`raftpg certs`: a cluster CA and one certificate per node for the REST API's TLS."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from raftpg.cli.certs import write_ca, write_node_cert


def register(sub: Any) -> None:
    parser = sub.add_parser("certs", help="create a cluster CA and node certificates for the REST API")
    certs_sub = parser.add_subparsers(dest="certs_command", required=True)
    ca = certs_sub.add_parser("ca", help="create the cluster CA (ca.crt, ca.key) in DIR")
    ca.add_argument("dir", type=Path)
    ca.add_argument("--overwrite", action="store_true", help="replace an existing CA")
    ca.set_defaults(func=_ca)
    node = certs_sub.add_parser("node", help="create NAME.crt and NAME.key signed by the CA in --ca")
    node.add_argument("name")
    node.add_argument("--ca", type=Path, required=True, help="directory holding the CA")
    node.add_argument("--out", type=Path, required=True, help="where to write the node's files")
    node.add_argument("--san", action="append", default=[], required=True,
                      help="IP address or DNS name the node is reached by (repeatable)")
    node.set_defaults(func=_node)


def _ca(args: argparse.Namespace) -> int:
    try:
        path = write_ca(args.dir, overwrite=args.overwrite)
    except (FileExistsError, OSError, ValueError) as exc:
        print(f"raftpg certs ca: {exc}")
        return 1
    print(f"cluster CA written to {path}")
    return 0


def _node(args: argparse.Namespace) -> int:
    try:
        files = write_node_cert(args.ca, args.out, args.name, args.san)
    except (FileNotFoundError, OSError, ValueError) as exc:
        print(f"raftpg certs node: {exc}")
        return 1
    print(f"certificate {files.cert}, key {files.key} (CA {files.ca_cert})")
    print(f"restapi: {{certfile: {files.cert}, keyfile: {files.key}, cafile: {files.ca_cert}}}")
    return 0
