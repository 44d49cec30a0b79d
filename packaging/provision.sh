#!/usr/bin/env bash
# Provision one raftpg node on Debian 12: PostgreSQL 15 from Debian, the single-file raftpg
# binary, this node's configuration (`raftpg config init`) and the systemd unit. Run as root.
# Idempotent: an existing node configuration is kept (pass --force-config to rewrite it).
#
#   provision.sh --name node1 --self 10.0.0.11 --peers 10.0.0.12,10.0.0.13 \
#                --secrets cluster-secrets.yml [--binary dist/raftpg] [--scope demo]
#
# --witness provisions a witness member (a Raft vote and the REST API, no PostgreSQL): no
# PostgreSQL packages, no data directory; the OS user is created if missing (a system user, as
# the postgresql-15 package would), since raftpg never runs as root.
#
# --no-apt and --no-systemd skip the package install and systemctl (the network-namespace test
# hosts share this machine's packages and have no systemd of their own); every path can be moved
# with the options below so that several test hosts share one file system.
set -euo pipefail

usage() {
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
    cat <<'EOF'
options: --name N --self ADDR --peers A,B --secrets FILE      (required)
         --scope S (default raftpg)  --binary PATH (default dist/raftpg next to this script's parent)
         --prefix DIR (/usr/local/bin)  --config FILE (/etc/raftpg/node.yml)
         --unit-dir DIR (/etc/systemd/system)  --data-dir DIR  --raft-dir DIR  --socket-dir DIR
         --ttl SECONDS  --user USER (postgres)  --witness  --force-config  --no-apt  --no-systemd
EOF
}

die() { echo "provision: $*" >&2; exit 2; }

script_dir=$(cd "$(dirname "$0")" && pwd)
scope=raftpg name="" self="" peers="" secrets=""
binary="$script_dir/../dist/raftpg"
prefix=/usr/local/bin config=/etc/raftpg/node.yml unit_dir=/etc/systemd/system
data_dir=/var/lib/postgresql/15/main raft_dir=/var/lib/raftpg/raft socket_dir="" ttl=10 user=postgres
force_config=0 apt=1 systemd=1 witness=0

while [ $# -gt 0 ]; do
    case "$1" in
        --scope) scope=$2; shift ;;
        --name) name=$2; shift ;;
        --self) self=$2; shift ;;
        --peers) peers=$2; shift ;;
        --secrets) secrets=$2; shift ;;
        --binary) binary=$2; shift ;;
        --prefix) prefix=$2; shift ;;
        --config) config=$2; shift ;;
        --unit-dir) unit_dir=$2; shift ;;
        --data-dir) data_dir=$2; shift ;;
        --raft-dir) raft_dir=$2; shift ;;
        --socket-dir) socket_dir=$2; shift ;;
        --ttl) ttl=$2; shift ;;
        --user) user=$2; shift ;;
        --witness) witness=1 ;;
        --force-config) force_config=1 ;;
        --no-apt) apt=0 ;;
        --no-systemd) systemd=0 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option $1" ;;
    esac
    shift
done

[ "$(id -u)" -eq 0 ] || die "run as root"
for required in name self peers secrets; do
    [ -n "${!required}" ] || { usage >&2; die "--$required is required"; }
done
[ -f "$secrets" ] || die "no secrets file $secrets (create it once with: raftpg config secrets > cluster-secrets.yml)"
[ -x "$binary" ] || die "no executable $binary (build it with: make dist)"

if [ "$apt" -eq 1 ] && [ "$witness" -eq 0 ]; then
    # The Debian package would create and start a cluster of its own on port 5432; raftpg
    # creates the cluster itself, so tell postgresql-common not to.
    mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/raftpg.conf
    if ! dpkg -s postgresql-15 >/dev/null 2>&1; then
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql-15
    fi
fi
if [ "$witness" -eq 1 ]; then
    if ! id "$user" >/dev/null 2>&1; then
        useradd --system --user-group --home-dir "$(dirname "$raft_dir")" --no-create-home \
            --shell /usr/sbin/nologin "$user"
        echo "provision: created the system user $user (a witness has no postgresql-15 package to bring it)"
    fi
else
    id "$user" >/dev/null 2>&1 || die "OS user $user does not exist (it comes with the postgresql-15 package)"
fi

install -d -m 0755 "$prefix"
install -m 0755 "$binary" "$prefix/raftpg.new"
mv -f "$prefix/raftpg.new" "$prefix/raftpg"
raftpg="$prefix/raftpg"
echo "provision: installed $raftpg ($("$raftpg" version))"

if [ "$witness" -eq 1 ]; then
    dirs=("$(dirname "$raft_dir")")
else
    dirs=("$(dirname "$data_dir")" "$(dirname "$raft_dir")" ${socket_dir:+"$socket_dir"})
fi
for dir in "${dirs[@]}"; do
    install -d -o "$user" -g "$user" -m 0750 "$dir"
done
install -d -o root -g "$user" -m 0750 "$(dirname "$config")"

if [ -f "$config" ] && [ "$force_config" -eq 0 ]; then
    echo "provision: keeping the existing $config (--force-config rewrites it)"
else
    init=("$raftpg" config init --force --scope "$scope" --name "$name" --self "$self" --peers "$peers"
          --secrets "$secrets" --output "$config" --raft-dir "$raft_dir" --ttl "$ttl")
    if [ "$witness" -eq 1 ]; then
        init+=(--witness)
    else
        init+=(--data-dir "$data_dir")
        [ -z "$socket_dir" ] || init+=(--socket-dir "$socket_dir")
    fi
    "${init[@]}"
fi
chown "$user:$user" "$config"
chmod 0600 "$config"
"$raftpg" config validate "$config"

install -d -m 0755 "$unit_dir"
"$raftpg" systemd-unit --binary "$raftpg" --config "$config" --user "$user" --ttl "$ttl" > "$unit_dir/raftpg.service"
echo "provision: wrote $unit_dir/raftpg.service"

if [ "$systemd" -eq 1 ]; then
    systemctl daemon-reload
    # --no-block: the first node waits for a Raft majority, i.e. for the next host to be provisioned.
    systemctl enable --now --no-block raftpg.service
    echo "provision: raftpg.service enabled and starting; follow it with: journalctl -fu raftpg"
else
    echo "provision: --no-systemd: start it with: runuser -u $user -- $raftpg run -c $config"
fi
