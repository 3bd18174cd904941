# Helpers for vmtest scenario scripts (busybox sh). Source with `. /vmtest/lib.sh`.
#
# A scenario passes when its script exits 0. `fail REASON` ends it with that reason (one
# line, shown in the harness's FAIL line); everything printed goes to the console log, which
# the harness shows on failure. `vm_data KEY` sends its stdin to the host-side check.

# Debian's busybox prefers its own applets: a plain `ip` would run busybox's, which knows
# neither `vf` nor `netns`.
ip() { /sbin/ip "$@"; }

fail() {
    echo "FAIL: $*"
    printf '%s\n' "$*" >/tmp/vmtest-reason
    exit 1
}

note() { echo "-- $*"; }

# Runs a command, echoing it and its exit status to stderr (so `run cmd >file` keeps only the
# command's own output in the file).
run() {
    echo "\$ $*" >&2
    "$@"
    _rc=$?
    [ $_rc = 0 ] || echo "[exit $_rc]" >&2
    return $_rc
}

# Runs a command that must succeed; its output goes to the console.
must() { run "$@" || fail "\`$*\` failed (exit $_rc)"; }

# Runs a command that must fail; its stderr is kept in $ERR.
must_fail() {
    echo "\$ $*  (must fail)" >&2
    ERR="$("$@" 2>&1 >/dev/null)"
    _rc=$?
    echo "$ERR"
    [ $_rc != 0 ] || fail "\`$*\` succeeded but should have failed"
}

# Runs a command with fault point $1 armed (VFPOOL_FAULT): it must die by SIGKILL (exit 137)
# and say on stderr that it reached that very point; its stderr is kept in $ERR.
must_crash_at() { # point cmd...
    _point=$1
    shift
    echo "\$ VFPOOL_FAULT=$_point $*  (must be killed there)" >&2
    ERR="$(VFPOOL_FAULT=$_point "$@" 2>&1 >/dev/null)"
    _rc=$?
    echo "$ERR"
    [ $_rc = 137 ] || fail "\`$*\` with VFPOOL_FAULT=$_point exited $_rc, not 137 (SIGKILL)"
    printf '%s\n' "$ERR" | grep -qxF "vfpool: fault point $_point reached; SIGKILL" ||
        fail "\`$*\` did not report reaching fault point $_point"
    echo "ok: killed at $_point"
}

expect_eq() { # what got want
    [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
    echo "ok: $1 = $3"
}

# Fails unless $ERR (see must_fail) is exactly one line.
expect_one_line() {
    expect_eq "error lines" "$(printf '%s\n' "$ERR" | wc -l)" 1
}

# Fails unless $ERR is one line naming each argument as a whole word; `a|b` accepts either.
expect_err_names() {
    expect_one_line
    for _w in "$@"; do
        printf '%s\n' "$_w" | tr '|' '\n' >/tmp/err-words
        printf '%s\n' "$ERR" | grep -qwF -f /tmp/err-words ||
            fail "the error does not name '$_w': $ERR"
        echo "ok: the error names '$_w'"
    done
}

# Sends stdin to the host as data block KEY of this scenario.
vm_data() {
    sed "s/^/VMTEST DATA $VMTEST_SCENARIO $1: /" >/dev/ttyS1
}

# SR-IOV capable PFs as "netdev pci" lines, in PCI order.
pfs() {
    for dev in /sys/bus/pci/devices/*; do
        [ -e "$dev/sriov_totalvfs" ] || continue
        for n in "$dev"/net/*; do
            [ -e "$n" ] && echo "${n##*/} ${dev##*/}"
        done
    done
}

# The sysfs directory of netdev $1's PCI device.
pf_dir() { echo "/sys/class/net/$1/device"; }

# Number of virtfn links of the PF whose sysfs directory is $1.
virtfn_count() { ls -d "$1"/virtfn* 2>/dev/null | wc -l; }

# Driver of the PCI device whose sysfs directory is $1 ("" when unbound).
driver_of() {
    if [ -e "$1/driver" ]; then basename "$(readlink "$1/driver")"; fi
}

# Fails unless this guest has at least $1 PFs.
need_pfs() {
    [ "$(pfs | wc -l)" -ge "$1" ] || fail "need $1 SR-IOV PFs, found: $(pfs | tr '\n' ' ')"
}

# Picks the first SR-IOV PF: sets nic (its netdev), pci (its address) and dir (its sysfs
# directory).
use_first_pf() {
    need_pfs 1
    set -- $(pfs | head -n1)
    nic=$1 pci=$2
    dir=$(pf_dir "$nic")
}

# `jq -r FILTER` on the file $1.
jqf() { jq -r "$2" "$1"; }

# Flattens the JSON file $1 into `path=value` lines in $2 (`0.name=eth0`, `vfs.3.pci=...`,
# null as `null`), so that many fields cost one jq run (each takes a while under TCG).
json_flat() {
    jq -r 'paths(type != "object" and type != "array") as $p | "\($p | map(tostring) | join("."))=\(getpath($p) | tostring)"' "$1" >"$2" ||
        fail "$1 is not JSON"
}

# The value at PATH in a json_flat file ($1), empty when absent.
jget() { sed -n "s/^$2=//p" "$1" | head -n1; }

# Ends this boot with a power cut once the scenario has reported: no sync, no unmount, the
# page cache lost (sysrq b), so only what vfpool made durable is on the state disk at the next
# boot. The scenario must be the last of its boot.
power_cut_after() { : >/tmp/vmtest-powercut; }

# Fails unless vfpool's state directory is the state disk (configs with state_disk).
need_state_disk() {
    grep -q ' /var/lib/vfpool ext4 ' /proc/mounts || fail "/var/lib/vfpool is not the state disk"
}

# Waits up to 5 s for netdev $1 to report operstate up.
wait_carrier() {
    _i=0
    while [ "$(cat "/sys/class/net/$1/operstate")" != up ] && [ $_i -lt 50 ]; do
        sleep 0.1
        _i=$((_i + 1))
    done
    expect_eq "$1 operstate (after ${_i}00 ms)" "$(cat "/sys/class/net/$1/operstate")" up
}

# The PF-side configuration of every VF of PF $1 (ip -j link: VLAN, trust, spoofchk, rates,
# link state), one VF per line, to compare before and after. Without the MAC unless $2 is
# `full`: a VF without an administrative MAC shows whatever its igbvf chose, and igbvf picks
# a new random one on every probe (e.g. when vfio-pci is unbound again) or when its netdev
# MAC is restored. With nothing rebound in between (a refused acquire), use `full`.
vf_snapshot() { # pf [full]
    if [ "$2" = full ]; then
        ip -j link show "$1" | jq -c -S '.[0].vfinfo_list[]'
    else
        ip -j link show "$1" | jq -c -S '.[0].vfinfo_list[] | del(.address)'
    fi
}

# Fails unless PF $1's VFs are configured as in the snapshot file $2 (taken with the same
# $4, see vf_snapshot) and no VF keeps one of the MACs scenarios lease (02:00:00:00:*).
expect_vfs_as() { # pf snapshot what [full]
    vf_snapshot "$1" "$4" >/tmp/vfs-now
    if ! cmp -s "$2" /tmp/vfs-now; then
        diff "$2" /tmp/vfs-now
        fail "$3: VF configuration differs from before (diff above)"
    fi
    if ip link show "$1" | grep -q 'link/ether 02:00:00:00:'; then
        ip link show "$1"
        fail "$3: a VF kept a leased MAC"
    fi
    echo "ok: $3: VF configuration as before"
}

# Waits until netdev $1 has been up for 1.5 s in a row (at most 15 s). Enabling SR-IOV
# resets the igb PF, and its link drops a moment *after* sriov_numvfs was written, so
# "up once" right after a split proves nothing.
settle_carrier() {
    _i=0
    _up=0
    while [ $_up -lt 15 ] && [ $_i -lt 150 ]; do
        if [ "$(cat "/sys/class/net/$1/operstate")" = up ]; then _up=$((_up + 1)); else _up=0; fi
        sleep 0.1
        _i=$((_i + 1))
    done
    [ $_up -ge 15 ] || fail "$1 link did not settle up within 15 s"
    echo "ok: $1 link up and settled after ${_i}00 ms"
}

# With PF $nic up, splits it into $1 VFs, records the VFs' state in /tmp/vfs-before and
# makes pool $2 of them. vfpool counts VFs of a PF without link as unhealthy, and the igb
# VF<->PF mailbox needs the PF up; `nic split` waits for the PF's link after the reset that
# enabling SR-IOV causes, and settle_carrier checks that it stays up.
split_into_pool() { # vfs pool
    must ip link set "$nic" up
    settle_carrier "$nic"
    must vfpool nic split "$nic" --vfs "$1"
    settle_carrier "$nic"
    vf_snapshot "$nic" >/tmp/vfs-before
    must vfpool pool create "$2" --select "$nic"
}

# Number of leases vfpool has.
lease_count() { vfpool lease list -o json | jq length; }

# free_vfs of NIC $1 as `vfpool nic show` reports it.
free_vfs() { vfpool nic show "$1" -o json | jq -r .free_vfs; }

# The PF's view of VF $2 of PF $1 (ip -j link vfinfo_list), flattened into /tmp/vf.flat
# (see json_flat); read fields with `vf`.
vf_info() { # pf index
    ip -j link show "$1" >/tmp/link.json || fail "ip -j link show $1 failed"
    jq --argjson i "$2" '.[0].vfinfo_list[] | select(.vf == $i)' /tmp/link.json >/tmp/vf.json
    [ -s /tmp/vf.json ] || fail "ip link show $1 lists no vf $2"
    cat /tmp/vf.json
    json_flat /tmp/vf.json /tmp/vf.flat
}

# A field of the VF last read by vf_info; $2 when absent (iproute2 leaves out VLAN 0, QoS 0
# and tx_rate 0).
vf() {
    _v=$(jget /tmp/vf.flat "$1")
    echo "${_v:-$2}"
}

# --- CNI: vfpool-cni and Debian's IPAM plugins are in /opt/cni/bin (CNI_PATH).
CNI_BIN=/opt/cni/bin

# Runs vfpool-cni as a runtime does: CNI_COMMAND $1, CNI_CONTAINERID $2, CNI_NETNS $3,
# CNI_IFNAME $4 (each left unset when empty, as for STATUS and GC), the config file $5 on
# stdin. Its stdout (result or error JSON) lands in /tmp/cni.out, its stderr (logs) in
# /tmp/cni.err; both are echoed. Returns its exit status (also in $_rc).
cni() { # command containerid netns ifname config
    echo "\$ CNI_COMMAND=$1 CNI_CONTAINERID=$2 CNI_NETNS=$3 CNI_IFNAME=$4 vfpool-cni <$5" >&2
    (
        export CNI_COMMAND="$1" CNI_PATH=$CNI_BIN
        [ -z "$2" ] || export CNI_CONTAINERID="$2"
        [ -z "$3" ] || export CNI_NETNS="$3"
        [ -z "$4" ] || export CNI_IFNAME="$4"
        exec $CNI_BIN/vfpool-cni <"$5" >/tmp/cni.out 2>/tmp/cni.err
    )
    _rc=$?
    cat /tmp/cni.out
    [ -s /tmp/cni.err ] && sed 's/^/  stderr: /' /tmp/cni.err
    [ $_rc = 0 ] || echo "[exit $_rc]"
    return $_rc
}

# cni that must succeed.
cni_must() {
    cni "$@" || fail "CNI $1 ${2:+of $2 }failed (exit $_rc): $(jq -r '.msg // empty' /tmp/cni.out 2>/dev/null)"
}

# cni that must fail (non-zero exit with the spec's error JSON on stdout).
cni_must_fail() {
    cni "$@" && fail "CNI $1 ${2:+of $2 }succeeded but should have failed"
    jq -e '.msg | type == "string"' /tmp/cni.out >/dev/null ||
        fail "CNI $1 ${2:+of $2 }failed (exit $_rc) without the spec's error JSON on stdout"
    echo "ok: CNI $1 failed (exit $_rc)"
}

# The error JSON of the last cni call has code $1 (unless empty) and its msg or details
# names each further argument.
expect_cni_error() { # code words...
    _code=$1
    shift
    [ -z "$_code" ] || expect_eq "CNI error code" "$(jq -r .code /tmp/cni.out)" "$_code"
    _text=$(jq -r '"\(.msg) \(.details // "")"' /tmp/cni.out)
    for _w in "$@"; do
        printf '%s\n' "$_text" | grep -qF -- "$_w" || fail "the CNI error does not name '$_w': $_text"
        echo "ok: the CNI error names '$_w'"
    done
}
