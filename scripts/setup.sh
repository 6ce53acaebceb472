#!/usr/bin/env bash
# Installs everything a fresh Debian 12 machine lacks to build and test netagent.
# Idempotent and fast when everything is present (each step checks before it acts).
# Pins come from ../shared/TOOLCHAIN.md ("Stack B"): keep them in sync with
# rust-toolchain.toml and agent/build.rs.
set -euo pipefail

RUST_USER_TOOLCHAIN=1.99.1
RUST_BPF_TOOLCHAIN=nightly-2026-06-20
BPF_LINKER_VERSION=0.13.0
APT_PACKAGES=(llvm-22-dev libllvm22 bpftool ethtool iproute2 iperf3 curl python3 iputils-ping iptables nftables
    # The reference CNI plugins: host-local as a delegated IPAM, bridge as the
    # main plugin netagent-cni chains after (tests).
    containernetworking-plugins
    # Real runtimes driving netagent-cni (tests/tests/runtimes.rs): containerd
    # (ctr run --cni), Podman 4 with its CNI backend, a busybox rootfs.
    containerd runc podman busybox-static)
# What the benchmark (./x bench) needs on top: the tools it compares with.
# sockperf; and libcni for the CNI section's client (bench/libcni, built offline
# in GOPATH mode), with the reference plugins it compares against.
BENCH_PACKAGES=(sockperf golang-go golang-github-appc-cni-dev containernetworking-plugins)
BENCH_CACHE=/var/cache/netagent-bench
BENCH=0
[ "${1:-}" = "--bench" ] && BENCH=1
[ $BENCH = 1 ] && APT_PACKAGES+=("${BENCH_PACKAGES[@]}")

log() { printf 'setup: %s\n' "$*" >&2; }

if [ "$(id -u)" != 0 ]; then
    echo "setup: must run as root (installs packages, loads eBPF programs)" >&2
    exit 1
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v rustup >/dev/null; then
    echo "setup: rustup not found; this machine kind ships it (see shared/TOOLCHAIN.md)" >&2
    exit 1
fi

installed=$(rustup toolchain list)
if ! grep -q "^${RUST_USER_TOOLCHAIN}-" <<<"$installed"; then
    log "rustup toolchain install ${RUST_USER_TOOLCHAIN}"
    rustup toolchain install "${RUST_USER_TOOLCHAIN}" --profile minimal --component clippy,rustfmt
fi
if ! grep -q "^${RUST_BPF_TOOLCHAIN}-" <<<"$installed"; then
    log "rustup toolchain install ${RUST_BPF_TOOLCHAIN}"
    rustup toolchain install "${RUST_BPF_TOOLCHAIN}" --profile minimal --component rust-src,clippy,rustfmt
fi

export PATH="$HOME/.cargo/bin:$PATH"
if ! bpf-linker --version 2>/dev/null | grep -q "${BPF_LINKER_VERSION}"; then
    log "cargo install bpf-linker@${BPF_LINKER_VERSION} (llvm-22)"
    # LLVM_PREFIX is mandatory: the first llvm-config on PATH is LLVM 14 (TOOLCHAIN.md 6.1).
    LLVM_PREFIX=/usr/lib/llvm-22 cargo "+${RUST_USER_TOOLCHAIN}" install "bpf-linker@${BPF_LINKER_VERSION}" \
        --locked --no-default-features --features llvm-22
fi

# docker-proxy, unpacked from Debian's docker.io package without installing
# it: installing would bring dockerd, which rewrites the host's firewall and
# bridges. The benchmark runs the proxy alone, as Docker does per port.
if [ $BENCH = 1 ] && [ ! -x "$BENCH_CACHE/docker-proxy" ]; then
    log "unpacking docker-proxy from Debian's docker.io package"
    mkdir -p "$BENCH_CACHE"
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download docker.io >/dev/null 2>&1) || { apt-get update -qq && (cd "$tmp" && apt-get download docker.io >/dev/null); }
    cp "$tmp"/docker.io_*.deb "$BENCH_CACHE/docker.io.deb"
    dpkg-deb -x "$BENCH_CACHE/docker.io.deb" "$tmp/x"
    install -m 0755 "$tmp/x/usr/sbin/docker-proxy" "$BENCH_CACHE/docker-proxy"
    rm -rf "$tmp"
fi

if ! mount | grep -q ' /sys/fs/bpf type bpf'; then
    log "mounting bpffs on /sys/fs/bpf"
    mount -t bpf bpf /sys/fs/bpf
fi
log "ok"
