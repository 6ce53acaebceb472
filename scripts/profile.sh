#!/usr/bin/env bash
# Profiles what the benchmark's targets are missed by (docs/benchmark.md,
# "Profile"): the per-packet cost of netagent's programs on the
# publish-by-address path (bpf_stats: run time per run), where the CPUs
# spend the UDP 64 B run there and on the direct path (perf), and where
# the daemon spends the install of 50,000 publications (perf).
# Root; builds the benchmark's topology under its own prefix and removes
# it (and bpf_stats) on exit. Usage: scripts/profile.sh [BIN]
set -euo pipefail
BIN=${1:-target/release/netagent}
P=nap
WORK=$(mktemp -d)
BPFFS=$WORK/bpffs
STATS_BEFORE=$(cat /proc/sys/kernel/bpf_stats_enabled)
cleanup() {
  [[ -n "${DAEMON:-}" ]] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null || true
  for ns in c h t; do ip netns del "$P$ns" 2>/dev/null || true; done
  umount "$BPFFS" 2>/dev/null || true
  echo "$STATS_BEFORE" > /proc/sys/kernel/bpf_stats_enabled
  rm -rf "$WORK"
}
trap cleanup EXIT
for ns in c h t; do ip netns add "$P$ns"; ip -n "$P$ns" link set lo up; done
ip link add "${P}c0" netns "${P}c" type veth peer name "${P}h0" netns "${P}h"
ip link add "${P}hb0" netns "${P}h" type veth peer name "${P}t0" netns "${P}t"
ip -n "${P}h" link add "${P}br0" type bridge
ip -n "${P}h" link set "${P}hb0" master "${P}br0"
ip -n "${P}c" addr add 10.90.1.2/24 dev "${P}c0"
ip -n "${P}h" addr add 10.90.1.1/24 dev "${P}h0"
ip -n "${P}h" addr add 10.90.2.1/24 dev "${P}br0"
ip -n "${P}t" addr add 10.90.2.2/24 dev "${P}t0"
for l in "c ${P}c0" "h ${P}h0" "h ${P}br0" "h ${P}hb0" "t ${P}t0"; do
  set -- $l; ip -n "$P$1" link set "$2" up
done
ip -n "${P}c" route add default via 10.90.1.1
ip -n "${P}t" route add default via 10.90.2.1
ip netns exec "${P}h" sysctl -qw net.ipv4.ip_forward=1
ip netns exec "${P}c" ethtool -K "${P}c0" tx off tso off gso off >/dev/null
ip netns exec "${P}t" iperf3 -s -D -p 5201 --logfile "$WORK/iperf.log"
for _ in $(seq 50); do ip netns exec "${P}t" ss -ltnH | grep -q ':5201 ' && break; sleep 0.1; done

udp() { ip netns exec "${P}c" iperf3 -c "$1" -p "$2" -u -l 64 -b 0 -t 5 -J |
  python3 -c 'import json,sys; e=json.load(sys.stdin)["end"]["sum"]; print(round((e["packets"]-e["lost_packets"])/e["seconds"]/1000,1),"kpps")'; }

echo "== direct, UDP 64 B, perf (all CPUs)"
perf record -q -a -g -o "$WORK/direct.data" -- sleep 5 >/dev/null 2>&1 &
PERF=$!; udp 10.90.2.2 5201; wait $PERF || true
perf report -q -i "$WORK/direct.data" --no-children -g none --sort symbol --percent-limit 1.5 2>/dev/null | grep -v "^$" || true

mkdir -p "$BPFFS" && mount -t bpf bpf "$BPFFS"
ip netns exec "${P}h" "$BIN" --socket "$WORK/sock" daemon --state-dir "$WORK/state" \
  --bpffs "$BPFFS" --iface "${P}h0" --hold-ports=false 2>"$WORK/daemon.log" &
DAEMON=$!
for _ in $(seq 100); do [[ -S "$WORK/sock" ]] && break; sleep 0.1; done
[[ -S "$WORK/sock" ]] || { echo "the daemon did not start:"; cat "$WORK/daemon.log"; exit 1; }
"$BIN" --socket "$WORK/sock" publish '8201->10.90.2.2:5201/udp' '8201->10.90.2.2:5201/tcp' >/dev/null

echo 1 > /proc/sys/kernel/bpf_stats_enabled
echo "== netagent by address, UDP 64 B, perf (all CPUs)"
perf record -q -a -g -o "$WORK/na.data" -- sleep 5 >/dev/null 2>&1 &
PERF=$!; udp 10.90.1.1 8201; wait $PERF || true
perf report -q -i "$WORK/na.data" --no-children -g none --sort symbol --percent-limit 1.5 2>/dev/null | grep -v "^$" || true
echo "== netagent programs: runs and ns per run during that run"
bpftool -j prog show | python3 -c '
import json, sys
for p in json.load(sys.stdin):
    name, runs, ns = p.get("name", ""), p.get("run_cnt", 0), p.get("run_time_ns", 0)
    if name.startswith("na_") and runs:
        print("%-18s %10d runs %8.0f ns/run" % (name, runs, ns / runs))'
echo "== install of 50,000 publications, perf of the daemon"
python3 -c 'print("\n".join(f"{10000+i}->10.90.2.2:5201/tcp" for i in range(49999)))' > "$WORK/specs"
perf record -q -g -p "$DAEMON" -o "$WORK/install.data" >/dev/null 2>&1 &
PERF=$!; sleep 0.5
/usr/bin/time -f "%e s" "$BIN" --socket "$WORK/sock" publish --file "$WORK/specs" >/dev/null
sleep 0.5; kill -INT $PERF; wait $PERF || true
perf report -q -i "$WORK/install.data" --children -g none --sort symbol --percent-limit 4 2>/dev/null | grep -v "^$" || true
