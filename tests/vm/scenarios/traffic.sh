# Two leases for containers: each VF gets its leased MAC (PF side and on the VF netdev, so
# the NIC's anti-spoofing lets it send), the netdevs go into two network namespaces (as the
# CNI plugin will do), and they ping each other through the emulated NIC's internal switch.
# Then a port VLAN isolates: c1 leased again with --vlan 100 cannot reach c0, and leased
# again without it can. Addresses are inside this guest's own namespaces only; nothing
# leaves the VM.
. /vmtest/lib.sh

use_first_pf

# Leases a VF to container c$1 (further arguments: more acquire options) and, as the CNI
# plugin would, moves its netdev into netns ns$1 with address 10.250.0.<$1 + 1>, up.
attach() { # k [acquire options]
    k=$1
    shift
    mac=02:00:00:00:01:0$((k + 1))
    run vfpool lease acquire --pool net --owner "c$k" --owner-kind container \
        --netns "/run/netns/ns$k" --mac "$mac" "$@" -o json >/tmp/lease$k.json ||
        fail "lease acquire for c$k failed (exit $_rc)"
    cat /tmp/lease$k.json
    nd=$(jqf /tmp/lease$k.json '.netdev // ""')
    [ -n "$nd" ] || fail "lease c$k has no netdev"
    expect_eq "c$k netdev MAC" "$(cat "/sys/class/net/$nd/address")" "$mac"
    echo "$nd" >/tmp/netdev$k
    must ip link set "$nd" netns "ns$k"
    must ip -n "ns$k" addr add "10.250.0.$((k + 1))/24" dev "$nd"
    must ip -n "ns$k" link set "$nd" up
    _i=0
    until ip -n "ns$k" link show "$nd" | grep -q LOWER_UP; do
        [ $_i -lt 50 ] || fail "c$k's $nd in ns$k has no carrier after 5 s"
        sleep 0.1
        _i=$((_i + 1))
    done
    echo "ok: c$k's $nd in ns$k has carrier (after ${_i}00 ms)"
}

# As a CNI DEL would: the netdev back to the host's namespace, then release.
detach() { # k
    must ip -n "ns$1" link set "$(cat /tmp/netdev$1)" netns 1
    must vfpool lease release "c$1"
}

# c0 pings c1: $1 packets, at most $2 s.
ping_c1() { ip netns exec ns0 ping -c "$1" -w "$2" 10.250.0.2; }

split_into_pool 2 net

for k in 0 1; do
    must ip netns add "ns$k"
    attach $k
done
must ping_c1 3 10

note "a port VLAN on c1's VF isolates it from c0"
detach 1
attach 1 --vlan 100
vf_info "$nic" "$(jqf /tmp/lease1.json .vf_index)"
expect_eq "c1's VF vlan" "$(vf vlan_list.0.vlan)" 100
must_fail ping_c1 2 3
echo "ok: c0 cannot reach c1 behind VLAN 100"

note "without the VLAN, c1 is reachable again"
detach 1
attach 1
vf_info "$nic" "$(jqf /tmp/lease1.json .vf_index)"
expect_eq "c1's VF vlan" "$(vf vlan_list.0.vlan 0)" 0
must ping_c1 3 10

note "as a CNI DEL would: netdevs back, then release"
for k in 0 1; do
    detach $k
    must ip netns del "ns$k"
done
expect_eq "leases" "$(lease_count)" 0
expect_vfs_as "$nic" /tmp/vfs-before "after release"
must vfpool pool delete net
must vfpool nic restore "$nic"
