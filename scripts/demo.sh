#!/usr/bin/env bash
# The main job, end to end, on one machine: netagent runs in a simulated
# host (a network namespace) serving its uplink; two "containers" (more
# namespaces) are attached to netagent networks, one with published ports
# serving HTTP and iperf3; a client namespace outside reaches them through
# the host's address. Everything it creates is named nademo* and removed on
# exit, whatever happens.
#
#   client 10.88.1.2 [nademo-c0] -- [nademo-h0] 10.88.1.1  host  (bridges na-br*) -- web, db
#
# NETAGENT_DEMO_HOLD=1 keeps it all up until Ctrl-C, to poke at with the CLI
# and bpftool (the commands are printed).
set -euo pipefail
cd "$(dirname "$0")/.."

P=nademo
ROOT=/run/netagent-demo
HOST_IP=10.88.1.1
CLIENT_IP=10.88.1.2
BIN="$PWD/target/release/netagent"
SOCK="$ROOT/netagent.sock"
pids=()

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

cleanup() {
    local rc=$?
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    # Deleting the host namespace deletes its bridges and container veths.
    for ns in ${P}-client ${P}-host ${P}-web ${P}-db; do
        ip netns del "$ns" 2>/dev/null || true
        # The resolv.conf and hosts the daemon wrote for `ip netns exec`.
        rm -rf "/etc/netns/$ns"
    done
    umount "$ROOT/bpffs" 2>/dev/null || true
    rmdir "$ROOT/cgroup/$P" 2>/dev/null || true
    umount "$ROOT/cgroup" 2>/dev/null || true
    rm -rf "$ROOT"
    # 130/143: stopped by Ctrl-C or SIGTERM (how a held demo ends).
    if [ $rc = 130 ] || [ $rc = 143 ]; then rc=0; fi
    if [ $rc -ne 0 ] && [ -f /tmp/${P}-daemon.log ]; then
        echo "demo failed; daemon log:" >&2
        cat /tmp/${P}-daemon.log >&2
    fi
    rm -f /tmp/${P}-daemon.log
    exit $rc
}
trap cleanup EXIT INT TERM

say "building netagent (release)"
cargo build --release --bin netagent

say "topology: a client outside, a host (runs netagent), two container namespaces"
for ns in ${P}-client ${P}-host ${P}-web ${P}-db; do
    ip netns del "$ns" 2>/dev/null || true
    ip netns add "$ns"
    ip -n "$ns" link set lo up
done
ip link add ${P}-c0 netns ${P}-client type veth peer name ${P}-h0 netns ${P}-host
ip -n ${P}-client addr add $CLIENT_IP/24 dev ${P}-c0
ip -n ${P}-host addr add $HOST_IP/24 dev ${P}-h0
ip -n ${P}-client link set ${P}-c0 up
ip -n ${P}-host link set ${P}-h0 up

# Pins live on a bpffs in the root mount namespace so they outlive the
# daemon (`ip netns exec` gives each process a private /sys).
mkdir -p "$ROOT/bpffs"
mount -t bpf bpf "$ROOT/bpffs"
# The socket hooks (host-local access to published ports) go on a child
# cgroup of the demo's own, never on the root that holds every process;
# cgroup2 is mounted here for the same /sys reason.
mkdir -p "$ROOT/cgroup"
mount -t cgroup2 none "$ROOT/cgroup"
mkdir -p "$ROOT/cgroup/$P"

say "netagent daemon in the host namespace, serving ${P}-h0"
ip netns exec ${P}-host "$BIN" --socket "$SOCK" daemon \
    --state-dir "$ROOT/state" --bpffs "$ROOT/bpffs" --cgroup "$ROOT/cgroup/$P" \
    --iface ${P}-h0 >/tmp/${P}-daemon.log 2>&1 &
pids+=($!)
for _ in $(seq 300); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || { echo "daemon did not come up" >&2; exit 1; }
na() { echo "+ netagent $*"; "$BIN" --socket "$SOCK" "$@"; }

say "networks: the default 'bridge', plus 'front' and an isolated 'back'"
na network create front --subnet 10.89.1.0/24
na network create back
na network ls

say "containers: web on front (publishing ports), db on back"
na container attach web --netns /run/netns/${P}-web --network front \
    -p 8080:80 -p 5201:5201 -p 5201:5201/udp -p 9000-9100:9000
na container attach db --netns /run/netns/${P}-db --network back
na container ls
na port web
WEB_IP=$("$BIN" --socket "$SOCK" --json container inspect web | python3 -c 'import json,sys; print(json.load(sys.stdin)["endpoints"][0]["ip"])')
DB_IP=$("$BIN" --socket "$SOCK" --json container inspect db | python3 -c 'import json,sys; print(json.load(sys.stdin)["endpoints"][0]["ip"])')

say "web serves HTTP on :80 and iperf3 on :5201"
mkdir -p "$ROOT/www"
echo "hello from the container at $WEB_IP" > "$ROOT/www/index.txt"
ip netns exec ${P}-web python3 -m http.server 80 --directory "$ROOT/www" >/dev/null 2>&1 &
pids+=($!)
ip netns exec ${P}-web iperf3 -s -p 5201 >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    ip netns exec ${P}-web ss -ltn | grep -q ":80 " && ip netns exec ${P}-web ss -ltn | grep -q ":5201 " && break
    sleep 0.1
done

say "client -> http://$HOST_IP:8080/index.txt (published port)"
ip netns exec ${P}-client curl --fail --silent --show-error --max-time 5 "http://$HOST_IP:8080/index.txt"

say "host -> http://127.0.0.1:8080/index.txt (a process of the hooked cgroup: translated at the socket)"
sh -c 'echo $$ > "$0/cgroup.procs" && exec ip netns exec "$1" curl --fail --silent --show-error --max-time 5 http://127.0.0.1:8080/index.txt' \
    "$ROOT/cgroup/$P" ${P}-host

say "client -> iperf3 TCP through $HOST_IP:5201"
ip netns exec ${P}-client iperf3 -c $HOST_IP -p 5201 -t 3 -f m | tail -4

say "client -> iperf3 UDP through $HOST_IP:5201"
ip netns exec ${P}-client iperf3 -u -b 200M -c $HOST_IP -p 5201 -t 2 -f m | tail -4

say "web -> client (outbound, masqueraded to $HOST_IP)"
ip netns exec ${P}-web ping -c 2 -W 1 $CLIENT_IP | tail -2

say "web -> db ($DB_IP): other network, dropped by the datapath"
if ip netns exec ${P}-web ping -c 1 -W 1 "$DB_IP" >/dev/null 2>&1; then
    echo "isolation FAILED: web reached db" >&2
    exit 1
fi
echo "no reply: isolated"

say "names: web asks its embedded resolver (127.0.0.11, no netfilter rule)"
ip netns exec ${P}-web cat /etc/resolv.conf | head -3
echo "+ getent ahostsv4 web.front   (in web)"
ip netns exec ${P}-web getent ahostsv4 web.front | head -1

say "counters"
na stats

say "the publication map, as bpftool sees it"
echo "+ bpftool map dump pinned $ROOT/bpffs/maps/NA_PUB4_V1"
bpftool map dump pinned "$ROOT/bpffs/maps/NA_PUB4_V1"

if [ "${NETAGENT_DEMO_HOLD:-0}" = 1 ]; then
    say "holding; try (in another shell):"
    echo "  $BIN --socket $SOCK port"
    echo "  $BIN --socket $SOCK stats"
    echo "  $BIN --socket $SOCK network inspect front"
    echo "  bpftool map dump pinned $ROOT/bpffs/maps/NA_EPADDR4_V1"
    echo "  bpftool map dump pinned $ROOT/bpffs/maps/NA_SNAT4_V1"
    echo "  ip netns exec ${P}-client curl http://$HOST_IP:8080/index.txt"
    echo "Ctrl-C (or SIGTERM) to tear it all down."
    # Wait on a background sleep: bash runs the EXIT/INT/TERM trap only
    # once a foreground command returns, but interrupts `wait` at once.
    while true; do sleep 3600 & pids+=($!); wait $! || true; done
fi
say "demo done; tearing down"
