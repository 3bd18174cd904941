#!/usr/bin/env bash
# vfpool's one test command: installs what the tests need on a fresh Debian 12 machine
# (as root), then runs every tier: unit, property and CLI tests over the simulated host,
# namespace tests (root), and the real-kernel tier under QEMU.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
if [ "${#need[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "test-all: missing packages ${need[*]} and not root to install them" >&2
        exit 1
    fi
    echo "test-all: installing ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Tier 1 and 2: unit, property, CLI and (as root) network-namespace tests.
cargo test --workspace --locked

# Tier 3: real VFs from QEMU's emulated igb NIC (installs qemu when missing).
cargo xtask vmtest
