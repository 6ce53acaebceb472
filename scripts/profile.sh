#!/usr/bin/env bash
# Profiles what the benchmark's targets are missed by (docs/benchmark.md,
# "Profile"):
#  1. publish by address, per packet: UDP 64 B directly, through netagent,
#     and directly again, each under `perf record -a`; every kernel symbol's
#     samples per 1,000 packets received, and the differences (this VM has
#     no hardware counters: perf samples on the clock, and `bpftool prog
#     profile` cannot run);
#  2. na_tc_ingress per kind of packet (prog-cost: BPF_PROG_TEST_RUN);
#  3. the install of 50,000 publications: the daemon's phase times, and a
#     perf profile of the daemon.
# Root; builds the benchmark's topology under its own prefix and removes
# it on exit. Usage: scripts/profile.sh [BIN [PROG_COST]]
set -euo pipefail
BIN=${1:-target/release/netagent}
PROG_COST=${2:-target/release/prog-cost}
P=nap
WORK=$(mktemp -d)
BPFFS=$WORK/bpffs
cleanup() {
  [[ -n "${DAEMON:-}" ]] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null || true
  for ns in c h t; do ip netns del "$P$ns" 2>/dev/null || true; done
  umount "$BPFFS" 2>/dev/null || true
  rmdir "$WORK/cgroup/$P" 2>/dev/null || true
  umount "$WORK/cgroup" 2>/dev/null || true
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
mkdir -p "$BPFFS" && mount -t bpf bpf "$BPFFS"
# The socket hooks on a child cgroup of our own (never the root).
mkdir -p "$WORK/cgroup" && mount -t cgroup2 none "$WORK/cgroup" && mkdir "$WORK/cgroup/$P"

start_daemon() {
  ip netns exec "${P}h" "$BIN" --socket "$WORK/sock" daemon --state-dir "$WORK/state" \
    --bpffs "$BPFFS" --cgroup "$WORK/cgroup/$P" --iface "${P}h0" --hold-ports=false 2>"$WORK/daemon.log" &
  DAEMON=$!
  for _ in $(seq 100); do [[ -S "$WORK/sock" ]] && break; sleep 0.1; done
  [[ -S "$WORK/sock" ]] || { echo "the daemon did not start:"; cat "$WORK/daemon.log"; exit 1; }
}
stop_daemon() { kill "$DAEMON"; wait "$DAEMON" 2>/dev/null || true; DAEMON=; rm -rf "$WORK/sock" "$WORK/state"; }

# Datagrams received in a 5 s UDP 64 B run to $1:$2 (iperf3's control
# connection is TCP on the same port).
udp() { ip netns exec "${P}c" iperf3 -c "$1" -p "$2" -u -l 64 -b 0 -t 5 -J |
  python3 -c 'import json,sys; j=json.load(sys.stdin); e=j["end"].get("sum") or sys.exit(j.get("error")); print(e["packets"]-e["lost_packets"])'; }
# A UDP run named $1 under perf; per-symbol samples into $1.sym.
profiled() {
  sleep 1
  perf record -q -a -o "$WORK/$1.data" -- sleep 5.5 >/dev/null 2>&1 &
  local perf=$! n
  n=$(udp "$2" "$3"); wait $perf || true
  echo "$n" > "$WORK/$1.n"
  perf report -q -i "$WORK/$1.data" --no-children --sort symbol -F sample,sym 2>/dev/null |
    awk 'NF>=3 {print $1, $3}' > "$WORK/$1.sym"
}

echo "== 1. publish by address, UDP 64 B: direct, netagent, direct again (perf -a)"
profiled direct 10.90.2.2 5201
start_daemon
"$BIN" --socket "$WORK/sock" publish '8201->10.90.2.2:5201/udp' '8201->10.90.2.2:5201/tcp' >/dev/null
profiled netagent 10.90.1.1 8201
stop_daemon
profiled direct2 10.90.2.2 5201
python3 - "$WORK" <<'PY'
import collections, sys
work = sys.argv[1]
def load(name):
    packets = int(open(f"{work}/{name}.n").read())
    samples = collections.Counter()
    for line in open(f"{work}/{name}.sym"):
        count, sym = line.split(None, 1)
        samples[sym.strip()] += int(count)
    return packets, samples
runs = {name: load(name) for name in ("direct", "netagent", "direct2")}
idle = ("pv_native_safe_halt", "call_cpuidle", "do_idle", "cpuidle", "tick_nohz_idle")
def per_k(name, sym=None):
    packets, samples = runs[name]
    if sym is None:
        return sum(v for k, v in samples.items() if not k.startswith(idle)) * 1000 / packets
    return samples[sym] * 1000 / packets
print("packets received: " + ", ".join(f"{n} {runs[n][0]}" for n in runs))
print("busy samples (idle loop excluded) per 1,000 packets: "
      + ", ".join(f"{n} {per_k(n):.1f}" for n in runs))
syms = set().union(*(s for _, s in runs.values()))
rows = sorted(((per_k("netagent", s) - (per_k("direct", s) + per_k("direct2", s)) / 2, s)
               for s in syms if not s.startswith(idle)), reverse=True)
print("largest increases, samples per 1,000 packets (netagent minus the mean of both direct runs):")
for delta, sym in rows[:15]:
    print(f"  {delta:+6.2f}  {sym}")
PY

echo "== 2. na_tc_ingress per kind of packet (BPF_PROG_TEST_RUN)"
"$PROG_COST" 100000

echo "== 3. install of 50,000 publications"
start_daemon
python3 -c 'print("\n".join(f"{10000+i}->10.90.2.2:5201/tcp" for i in range(49999)))' > "$WORK/specs"
perf record -q -g -p "$DAEMON" -o "$WORK/install.data" >/dev/null 2>&1 &
PERF=$!; sleep 0.5
/usr/bin/time -f "%e s, the CLI's wall time" "$BIN" --socket "$WORK/sock" publish --file "$WORK/specs" >/dev/null
sleep 0.5; kill -INT $PERF; wait $PERF || true
grep "published in bulk" "$WORK/daemon.log" | sed 's/\x1b\[[0-9;]*m//g; s/.*publications: //'
perf report -q -i "$WORK/install.data" --children -g none --sort symbol --percent-limit 8 2>/dev/null | grep -v "^$" | cut -c1-80 | sed "s/ *$//" || true
