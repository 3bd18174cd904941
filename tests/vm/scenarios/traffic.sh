# Two leases for containers: each VF gets its leased MAC (PF side and on the VF netdev, so
# the NIC's anti-spoofing lets it send), the netdevs go into two network namespaces (as the
# CNI plugin will do), and they ping each other through the emulated NIC's internal switch.
# Addresses are inside this guest's own namespaces only; nothing leaves the VM.
. /vmtest/lib.sh

need_pfs 1
set -- $(pfs | head -n1)
nic=$1

must ip link set "$nic" up
settle_carrier "$nic"
must vfpool nic split "$nic" --vfs 2
settle_carrier "$nic"
vf_snapshot "$nic" >/tmp/vfs-before
must vfpool pool create net --select "$nic"

for k in 0 1; do
    mac=02:00:00:00:01:0$((k + 1))
    must ip netns add "ns$k"
    run vfpool lease acquire --pool net --owner "c$k" --owner-kind container \
        --netns "/run/netns/ns$k" --mac "$mac" -o json >/tmp/lease$k.json ||
        fail "lease acquire for c$k failed (exit $_rc)"
    cat /tmp/lease$k.json
    nd=$(jqf /tmp/lease$k.json '.netdev // ""')
    [ -n "$nd" ] || fail "lease c$k has no netdev"
    expect_eq "c$k netdev MAC" "$(cat "/sys/class/net/$nd/address")" "$mac"
    echo "$nd" >/tmp/netdev$k
    must ip link set "$nd" netns "ns$k"
    must ip -n "ns$k" addr add "10.250.0.$((k + 1))/24" dev "$nd"
    must ip -n "ns$k" link set "$nd" up
done

i=0
until ip -n ns1 link show "$(cat /tmp/netdev1)" | grep -q LOWER_UP || [ $i -ge 50 ]; do
    sleep 0.1
    i=$((i + 1))
done
must ip netns exec ns0 ping -c 3 -w 10 10.250.0.2

note "as a CNI DEL would: netdevs back, then release"
for k in 0 1; do
    must ip -n "ns$k" link set "$(cat /tmp/netdev$k)" netns 1
    must vfpool lease release "c$k"
    must ip netns del "ns$k"
done
expect_eq "leases" "$(lease_count)" 0
expect_vfs_as "$nic" /tmp/vfs-before "after release"
must vfpool pool delete net
must vfpool nic restore "$nic"
