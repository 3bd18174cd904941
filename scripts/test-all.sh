#!/usr/bin/env bash
# vfpool's one test command: installs what the tests need on a fresh Debian 12 machine
# (as root), then runs every tier: unit, property and CLI tests over the simulated host,
# namespace tests (root), and the real-kernel tier under QEMU.
set -euo pipefail
cd "$(dirname "$0")/.."

# Root: the namespace tests and the real-kernel tier need it, and fail (not skip) without it.
if [ "$(id -u)" -ne 0 ]; then
    echo "test-all: must run as root (the network-namespace tests and \`cargo xtask vmtest\` need it); try: sudo $0" >&2
    exit 1
fi

need=()
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
# The CNI plugin's tests: Debian's reference plugins (IPAM, tuning, host-device for the
# benchmark), a real runtime (podman, CNI backend) and a busybox root for its container.
[ -x /usr/lib/cni/host-local ] || need+=(containernetworking-plugins)
command -v podman >/dev/null 2>&1 || need+=(podman)
[ -x /bin/busybox ] || need+=(busybox-static)
# The libvirt XML's tests: libvirt's own schema check (virt-xml-validate runs xmllint).
command -v virt-xml-validate >/dev/null 2>&1 || need+=(libvirt-clients)
command -v xmllint >/dev/null 2>&1 || need+=(libxml2-utils)
# vfpool-libvirt's libvirt-api feature: libvirt's C library to build against, and a libvirtd
# with the QEMU driver that its tests start in a private mount namespace.
pkg-config --exists libvirt 2>/dev/null || need+=(libvirt-dev pkg-config)
[ -x /usr/sbin/libvirtd ] || need+=(libvirt-daemon)
[ -e /usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so ] || need+=(libvirt-daemon-driver-qemu)
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
# The web console's browser test (crates/vfpool/tests/console_browser.rs): headless Chromium
# driven over WebDriver.
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
# The REST API's fuzz run (scripts/api-fuzz.sh): schemathesis from PyPI in a venv.
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
if [ "${#need[@]}" -gt 0 ]; then
    echo "test-all: installing ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Tier 1 and 2: unit, property, CLI and network-namespace tests. VFPOOL_ALLOW_SKIP is never
# set here: a root-only test that cannot run fails.
unset VFPOOL_ALLOW_SKIP
cargo test --workspace --locked
# The REST API fuzzed from its OpenAPI document (no 5xx, no crash).
scripts/api-fuzz.sh
# deploy/ against the Kubernetes 1.34 schemas (kubernetes-validate from PyPI).
scripts/validate-deploy.sh
# The libvirt API (off by default so that the static builds link): test driver and libvirtd.
cargo test -p vfpool-libvirt --features libvirt-api --locked
# The CLI's `vm start|stop --libvirt` (vfpool's `libvirt` feature): test driver and libvirtd.
cargo test -p vfpool --features libvirt --locked --bin vfpool --test cli_vm_libvirt

# Tier 3: real VFs from QEMU's emulated igb NIC (installs qemu when missing).
cargo xtask vmtest
