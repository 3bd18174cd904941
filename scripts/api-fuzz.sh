#!/usr/bin/env bash
# Fuzzes the REST API from its own OpenAPI document with schemathesis: `vfpool serve` on a
# fresh demo host (never the real one), every operation with generated valid and invalid
# requests. Fails on any 5xx answer, on a daemon that crashed or panicked, or when the
# document cannot be read. Bounded: under 3 minutes on a quiet machine.
#
#   scripts/api-fuzz.sh [EXAMPLES]     (default 30 examples per operation; the run stops
#                                      after API_FUZZ_SECONDS, default 90; the data
#                                      from API_FUZZ_SEED, default 7)
#
# schemathesis comes from PyPI into a venv under target/ (installed once, then reused).
set -euo pipefail
cd "$(dirname "$0")/.."

examples="${1:-30}"
seconds="${API_FUZZ_SECONDS:-90}"
venv=target/venv
if [ ! -x "$venv/bin/schemathesis" ]; then
    echo "api-fuzz: installing schemathesis into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'schemathesis>=4,<5'
fi

cargo build -q -p vfpool
bin=target/debug/vfpool

state="$(mktemp -d)"
log="$state/serve.log"
pid=""
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$state"
}
trap cleanup EXIT

# Something to find: eno49 split, a pool, an SR-IOV L2 and an L3 on it, a VM.
v() { "$bin" --demo --state "$state" "$@" >/dev/null; }
v nic split eno49 --vfs 4
v pool create web --select 'eno49#0-1'
v l2 create l2a --nic eno49 --vlan 100 --sriov
v l3 create net1 --l2 l2a --cidr 192.168.10.0/24 --gateway 192.168.10.1
v vm create vm1 --nic l3=net1,sriov

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$bin" --demo --state "$state" serve --listen "127.0.0.1:$port" >"$log" 2>&1 &
pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do
    if python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "$base/healthz" 2>/dev/null; then
        break
    fi
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; echo "api-fuzz: vfpool serve exited" >&2; exit 1; }
    sleep 0.1
done

rc=0
# From the state directory: schemathesis keeps its cache (.schemathesis/) in its working
# directory, which is not to be left in the tree.
st="$PWD/$venv/bin/schemathesis"
(cd "$state" && "$st" run "$base/api/v1/openapi.json" \
    --checks not_a_server_error \
    --max-examples "$examples" \
    --phases examples,coverage,fuzzing \
    --workers 2 \
    --max-time "$seconds" \
    --request-timeout 30 \
    --seed "${API_FUZZ_SEED:-7}" \
    --generation-database none \
    --no-color \
    --warnings off) || rc=$?

if ! kill -0 "$pid" 2>/dev/null; then
    cat "$log" >&2
    echo "api-fuzz: FAILED: vfpool serve died during the run" >&2
    exit 1
fi
if grep -q "panicked" "$log"; then
    grep -B2 -A10 "panicked" "$log" >&2
    echo "api-fuzz: FAILED: vfpool serve panicked" >&2
    exit 1
fi
if [ "$rc" -ne 0 ]; then
    echo "api-fuzz: FAILED: schemathesis found server errors (exit $rc)" >&2
    exit "$rc"
fi
echo "api-fuzz: ok (no 5xx, no crash)"
