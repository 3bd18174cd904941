# Benchmark (not a timed test: the ratio never fails it; a plugin error does): wall time of
# vfpool-cni ADD and DEL of one real igb VF (MAC, MTU, a static address and a route) against
# the floor of the same netlink work done by iproute2's `ip -batch` in this guest:
#   ADD: in the host `link set VFDEV address M` (the VF asks its PF, which allows it while
#        it holds no MAC for the VF), `link set PF vf N mac M` (then pins it),
#        `link set VFDEV netns pod`; in the pod `link set VFDEV name net1`,
#        `link set net1 mtu 1400 up`, `addr add`, `route add`;
#   DEL: in the host `link set PF vf N mac 00:00:00:00:00:00` (igb: "no MAC set by the PF",
#        as vfpool's release); in the pod `link set net1 down`, `link set net1 name VFDEV`,
#        `link set VFDEV address ORIG mtu 1500`, `link set VFDEV netns 1`.
# The order matters on igb: an untrusted VF may not set any MAC (not even the one the PF set)
# while the PF holds one for it; igbvf then answers EADDRNOTAVAIL. A VF whose igbvf probed
# while the PF was still resetting (right after `nic split`) never talks to its PF until its
# first reset and lets its netdev take any MAC: the floor must not depend on that.
# The floor is two `ip -batch` processes each way; the plugin is one process, plus one exec
# of the `static` IPAM plugin per ADD and DEL with a 1.0.0 config (timed alone too, as is a
# bare plugin exec), three with a 1.1.0 config (timed too).
# Rounds alternate plugin and floor; medians over $ROUNDS. Prints `BENCH` lines.
. /vmtest/lib.sh

ROUNDS=${CNI_BENCH_ROUNDS:-21}
[ -r /proc/timer_list ] || fail "no /proc/timer_list: no clock with sub-millisecond resolution"

# The monotonic clock in ns, into $NOW, without a fork (line 3: "now at N nsecs").
now_ns() { { read -r _; read -r _; read -r _ _ NOW _; } </proc/timer_list; }

# Runs cmd..., appending its wall time in µs to file $1; returns its exit status.
timed() { # file cmd...
    _f=$1
    shift
    now_ns
    _t0=$NOW
    "$@"
    _rc=$?
    now_ns
    echo $(((NOW - _t0) / 1000)) >>"$_f"
    return $_rc
}

# The median of the numbers in file $1, in ms with two decimals.
median_ms() {
    sort -n "$1" | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f", m / 1000 }'
}

use_first_pf
split_into_pool 1 bench
must ip netns add pod-bench
host=$(ls "$dir/virtfn0/net")
[ -n "$host" ] || fail "VF 0 of $nic has no netdev"
orig_mac=$(cat "/sys/class/net/$host/address")
MAC=02:00:00:00:02:01

cat >/tmp/conf.json <<EOF
{"cniVersion":"1.0.0","name":"bench-net","type":"vfpool-cni","pool":"bench",
 "mac":"$MAC","mtu":1400,
 "ipam":{"type":"static","addresses":[{"address":"10.251.0.2/24"}],
         "routes":[{"dst":"10.252.0.0/16","gw":"10.251.0.1"}]}}
EOF
# The same at CNI 1.1.0, which Debian's IPAM plugins do not speak: the plugin asks, is
# refused (code 1), asks VERSION and asks again in 1.0.0, three execs per IPAM call.
jq '.cniVersion = "1.1.0"' /tmp/conf.json >/tmp/conf11.json

# The plugin and the IPAM plugin as a runtime runs them: one process, config on stdin.
plugin() { # command config-file
    (
        export CNI_COMMAND=$1 CNI_CONTAINERID=ctr-bench CNI_NETNS=/run/netns/pod-bench \
            CNI_IFNAME=net1 CNI_PATH=$CNI_BIN
        exec $CNI_BIN/vfpool-cni <"$2" >/tmp/cni.out 2>/tmp/cni.err
    )
}
plugin_version() {
    (
        export CNI_COMMAND=VERSION
        unset CNI_CONTAINERID CNI_NETNS CNI_IFNAME
        exec $CNI_BIN/vfpool-cni </tmp/conf.json >/dev/null
    )
}
# Debian 12's reference plugins (1.1.1) speak CNI up to 1.0.0.
jq -c '{cniVersion: "1.0.0", name: .name, ipam: .ipam}' /tmp/conf.json >/tmp/ipam.json
ipam_alone() {
    (
        export CNI_COMMAND=ADD CNI_CONTAINERID=ctr-bench CNI_NETNS=/run/netns/pod-bench \
            CNI_IFNAME=net1 CNI_PATH=$CNI_BIN
        exec $CNI_BIN/static </tmp/ipam.json >/tmp/ipam.out 2>&1
    )
}

cat >/tmp/add-host.batch <<EOF
link set $host address $MAC
link set $nic vf 0 mac $MAC
link set $host netns pod-bench
EOF
cat >/tmp/add-pod.batch <<EOF
link set $host name net1
link set net1 mtu 1400 up
addr add 10.251.0.2/24 dev net1
route add 10.252.0.0/16 via 10.251.0.1 dev net1
EOF
cat >/tmp/del-pod.batch <<EOF
link set net1 down
link set net1 name $host
link set $host address $orig_mac mtu 1500
link set $host netns 1
EOF
cat >/tmp/del-host.batch <<EOF
link set $nic vf 0 mac 00:00:00:00:00:00
EOF
floor_add() { /sbin/ip -batch /tmp/add-host.batch && /sbin/ip -n pod-bench -batch /tmp/add-pod.batch; }
# The PF-side MAC cleared first: an untrusted VF may not change an administratively set MAC.
floor_del() { /sbin/ip -batch /tmp/del-host.batch && /sbin/ip -n pod-bench -batch /tmp/del-pod.batch; }

# What an ADD (either way) must leave: net1 in the pod with the MAC, MTU 1400, the address
# and the route; after a DEL the VF netdev in the host under its name with its MTU.
expect_added() { # what
    ip -n pod-bench -j addr show dev net1 >/tmp/n.json || fail "$1: no net1 in pod-bench"
    expect_eq "$1: net1 MAC/MTU/address" \
        "$(jq -r '.[0] | "\(.address) \(.mtu) \([.addr_info[] | select(.family == "inet") | .local] | join(","))"' /tmp/n.json)" \
        "$MAC 1400 10.251.0.2"
    expect_eq "$1: route" "$(ip -n pod-bench -j route show 10.252.0.0/16 | jq -r '.[0].gateway')" 10.251.0.1
}
expect_deleted() { # what
    expect_eq "$1: VF 0 netdev in the host" "$(ls "$dir/virtfn0/net")" "$host"
    expect_eq "$1: $host MTU and MAC" \
        "$(cat "/sys/class/net/$host/mtu") $(cat "/sys/class/net/$host/address")" "1500 $orig_mac"
    vf_info "$nic" 0
    [ "$(vf address)" != "$MAC" ] || fail "$1: the PF still holds the pod's MAC for VF 0"
}

rm -f /tmp/t-*
r=0
while [ $r -lt "$ROUNDS" ]; do
    timed /tmp/t-plugin-add plugin ADD /tmp/conf.json ||
        fail "round $r: vfpool-cni ADD failed (exit $_rc): $(cat /tmp/cni.out /tmp/cni.err)"
    [ $r = 0 ] && expect_added "vfpool-cni ADD"
    timed /tmp/t-plugin-del plugin DEL /tmp/conf.json ||
        fail "round $r: vfpool-cni DEL failed (exit $_rc): $(cat /tmp/cni.out /tmp/cni.err)"
    [ $r = 0 ] && expect_deleted "vfpool-cni DEL"
    timed /tmp/t-plugin11-add plugin ADD /tmp/conf11.json ||
        fail "round $r: vfpool-cni ADD (1.1.0) failed (exit $_rc): $(cat /tmp/cni.out /tmp/cni.err)"
    [ $r = 0 ] && expect_added "vfpool-cni ADD (1.1.0)"
    timed /tmp/t-plugin11-del plugin DEL /tmp/conf11.json ||
        fail "round $r: vfpool-cni DEL (1.1.0) failed (exit $_rc): $(cat /tmp/cni.out /tmp/cni.err)"
    [ $r = 0 ] && expect_deleted "vfpool-cni DEL (1.1.0)"
    timed /tmp/t-floor-add floor_add || fail "round $r: the floor's ADD batch failed"
    [ $r = 0 ] && expect_added "floor ADD"
    timed /tmp/t-floor-del floor_del || fail "round $r: the floor's DEL batch failed"
    [ $r = 0 ] && expect_deleted "floor DEL"
    timed /tmp/t-ipam ipam_alone || fail "round $r: the static IPAM plugin alone failed: $(cat /tmp/ipam.out)"
    timed /tmp/t-version plugin_version || fail "round $r: vfpool-cni VERSION failed"
    r=$((r + 1))
done
expect_eq "leases after the rounds" "$(lease_count)" 0
expect_deleted "after the rounds"

pa=$(median_ms /tmp/t-plugin-add)
pd=$(median_ms /tmp/t-plugin-del)
fa=$(median_ms /tmp/t-floor-add)
fd=$(median_ms /tmp/t-floor-del)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "BENCH cni rounds $ROUNDS (medians, wall clock, ms)"
echo "BENCH cni ADD plugin $pa floor $fa ratio $(ratio "$pa" "$fa")"
echo "BENCH cni DEL plugin $pd floor $fd ratio $(ratio "$pd" "$fd")"
pa11=$(median_ms /tmp/t-plugin11-add)
pd11=$(median_ms /tmp/t-plugin11-del)
echo "BENCH cni at 1.1.0 (an IPAM plugin of 1.0.0; its versions remembered after the first call): ADD plugin $pa11 ratio $(ratio "$pa11" "$fa"), DEL plugin $pd11 ratio $(ratio "$pd11" "$fd")"
echo "BENCH cni static IPAM exec alone $(median_ms /tmp/t-ipam); vfpool-cni VERSION exec $(median_ms /tmp/t-version)"
for f in plugin-add plugin-del plugin11-add plugin11-del floor-add floor-del ipam version; do
    echo "BENCH cni samples $f (us): $(sort -n /tmp/t-$f | tr '\n' ' ')"
done

must ip netns del pod-bench
must vfpool pool delete bench
must vfpool nic restore "$nic"
