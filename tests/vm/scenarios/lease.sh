# A lease configures its VF through the real igb PF driver (rtnetlink IFLA_VFINFO_LIST, read
# back with iproute2) and release restores it: MAC, VLAN/QoS, trust, spoofchk, max rate.
# What igb refuses (link state, a minimum rate, 802.1ad) fails the acquire in one line naming
# the setting and the driver, with everything rolled back. With an IOMMU, `--driver vfio-pci` binds the
# VF to vfio-pci (a /dev/vfio group appears); without one it fails in one line and leaves no
# lease behind.
. /vmtest/lib.sh

use_first_pf

split_into_pool 7 gold

note "acquire with MAC, VLAN/QoS, trust, spoofchk"
run vfpool lease acquire --pool gold --owner vm1 --owner-kind vm --mac 02:00:00:00:00:11 \
    --vlan 100 --qos 3 --trust on --spoofchk off -o json >/tmp/lease.json ||
    fail "lease acquire failed (exit $_rc)"
cat /tmp/lease.json
json_flat /tmp/lease.json /tmp/lease.flat
i=$(jget /tmp/lease.flat vf_index)
vf_pci=$(jget /tmp/lease.flat vf_pci)
expect_eq "leased VF pci" "$vf_pci" "$(basename "$(readlink "$dir/virtfn$i")")"
vf_info "$nic" "$i"
expect_eq "vf $i mac" "$(vf address)" 02:00:00:00:00:11
expect_eq "vf $i vlan" "$(vf vlan_list.0.vlan)" 100
expect_eq "vf $i qos" "$(vf vlan_list.0.qos)" 3
expect_eq "vf $i trust" "$(vf trust)" true
expect_eq "vf $i spoofchk" "$(vf spoofchk)" false
expect_eq "leases" "$(lease_count)" 1
expect_eq "free_vfs" "$(free_vfs "$nic")" 6

note "release restores the VF"
must vfpool lease release vm1
vf_info "$nic" "$i"
expect_eq "vf $i vlan after release" "$(vf vlan_list.0.vlan 0)" 0
expect_eq "vf $i trust after release" "$(vf trust)" false
expect_eq "vf $i spoofchk after release" "$(vf spoofchk)" true
expect_vfs_as "$nic" /tmp/vfs-before "after release"
expect_eq "free_vfs after release" "$(free_vfs "$nic")" 7

note "acquire with a max rate (the PF link is up at 1000 Mb/s)"
run vfpool lease acquire --pool gold --owner vm3 --owner-kind vm --max-rate 100 -o json \
    >/tmp/lease.json || fail "lease acquire --max-rate 100 failed (exit $_rc)"
cat /tmp/lease.json
i=$(jqf /tmp/lease.json .vf_index)
vf_info "$nic" "$i"
expect_eq "vf $i rate.max_tx" "$(vf rate.max_tx)" 100
expect_eq "vf $i tx_rate" "$(vf tx_rate)" 100
expect_eq "vf $i rate.min_tx" "$(vf rate.min_tx 0)" 0
must vfpool lease release vm3
vf_info "$nic" "$i"
expect_eq "vf $i rate.max_tx after release" "$(vf rate.max_tx)" 0
expect_eq "vf $i tx_rate after release" "$(vf tx_rate 0)" 0
expect_vfs_as "$nic" /tmp/vfs-before "after the max-rate release"

# An acquire with settings igb refuses ($1: the word the error must name; the rest: acquire
# options). It must fail in one line naming that setting and igb, leave no lease, and leave
# every VF exactly as before, MAC included (nothing is rebound, so igbvf keeps its MAC).
refused() {
    what=$1
    shift
    note "igb refuses $what: $*"
    vf_snapshot "$nic" full >/tmp/vfs-full
    must_fail vfpool lease acquire --pool gold --owner bad --owner-kind vm "$@"
    expect_err_names "$what" igb
    expect_eq "leases after the refused $what" "$(lease_count)" 0
    expect_eq "free_vfs after the refused $what" "$(free_vfs "$nic")" 7
    expect_vfs_as "$nic" /tmp/vfs-full "after the refused $what" full
}
# MAC and VLAN go to the driver before the refused setting, and must be rolled back.
refused link-state --mac 02:00:00:00:00:21 --vlan 100 --link-state enable
refused min-rate --mac 02:00:00:00:00:22 --vlan 101 --trust on --max-rate 100 --min-rate 10
refused 'vlan-proto|802.1ad' --mac 02:00:00:00:00:23 --vlan 300 --vlan-proto 802.1ad
expect_vfs_as "$nic" /tmp/vfs-before "after the refused acquires"

if [ "$VMTEST_IOMMU" = 1 ]; then
    note "acquire for a VM with --driver vfio-pci"
    run vfpool lease acquire --pool gold --owner vm2 --owner-kind vm --driver vfio-pci -o json \
        >/tmp/lease.json || fail "lease acquire --driver vfio-pci failed (exit $_rc)"
    cat /tmp/lease.json
    i=$(jqf /tmp/lease.json .vf_index)
    vf_dir=$(readlink -f "$dir/virtfn$i")
    expect_eq "vf $i driver" "$(driver_of "$vf_dir")" vfio-pci
    group=$(basename "$(readlink "$vf_dir/iommu_group")")
    [ -c "/dev/vfio/$group" ] || fail "no /dev/vfio/$group for the vfio-pci VF"
    echo "ok: /dev/vfio/$group"
    must vfpool lease release vm2
    expect_eq "vf $i driver after release" "$(driver_of "$vf_dir")" igbvf
else
    note "--driver vfio-pci without an IOMMU"
    must_fail vfpool lease acquire --pool gold --owner vm2 --owner-kind vm --driver vfio-pci
    expect_one_line
    expect_eq "leases after the failed acquire" "$(lease_count)" 0
    expect_eq "free_vfs after the failed acquire" "$(free_vfs "$nic")" 7
    for vf in "$dir"/virtfn*; do
        expect_eq "${vf##*/} driver after the failed acquire" "$(driver_of "$vf")" igbvf
    done
fi

note "acquire with --mtu 9000: the VF netdev's MTU, put back on release"
run vfpool lease acquire --pool gold --owner vm4 --mtu 9000 -o json >/tmp/lease.json ||
    fail "lease acquire --mtu 9000 failed (exit $_rc)"
cat /tmp/lease.json
i=$(jqf /tmp/lease.json .vf_index)
vnd=$(jqf /tmp/lease.json .netdev)
expect_eq "vf $i netdev" "$vnd" "$(ls "$dir/virtfn$i/net")"
expect_eq "$vnd mtu" "$(ip -j link show "$vnd" | jq -r '.[0].mtu')" 9000
must vfpool lease release vm4
expect_eq "$vnd mtu after release" "$(ip -j link show "$vnd" | jq -r '.[0].mtu')" 1500

# `--driver netdevice` on VFs taken away from igbvf: with an IOMMU each VF is put on vfio-pci
# by hand (driver_override + drivers_probe), without one left unbound. The leased VF comes
# back on igbvf with a netdev of the asked MTU; release puts it back as it was.
if [ "$VMTEST_IOMMU" = 1 ]; then away=vfio-pci; else away=none; fi
note "--driver netdevice --mtu 4000 on VFs on $away"
for vf in "$dir"/virtfn*; do
    a=$(basename "$(readlink "$vf")")
    [ $away = vfio-pci ] && echo vfio-pci >"$vf/driver_override"
    echo "$a" >/sys/bus/pci/drivers/igbvf/unbind || fail "cannot unbind $a from igbvf"
    [ $away = vfio-pci ] && echo "$a" >/sys/bus/pci/drivers_probe
    got=$(driver_of "$vf")
    expect_eq "$a driver" "${got:-none}" $away
done
run vfpool lease acquire --pool gold --owner vm5 --driver netdevice --mtu 4000 -o json \
    >/tmp/lease.json || fail "lease acquire --driver netdevice --mtu 4000 failed (exit $_rc)"
cat /tmp/lease.json
i=$(jqf /tmp/lease.json .vf_index)
vnd=$(jqf /tmp/lease.json .netdev)
expect_eq "vf $i driver (--driver netdevice)" "$(driver_of "$dir/virtfn$i")" igbvf
expect_eq "vf $i netdev" "$vnd" "$(ls "$dir/virtfn$i/net")"
expect_eq "$vnd mtu" "$(ip -j link show "$vnd" | jq -r '.[0].mtu')" 4000
must vfpool lease release vm5
got=$(driver_of "$dir/virtfn$i")
expect_eq "vf $i driver after release" "${got:-none}" $away
for vf in "$dir"/virtfn*; do
    a=$(basename "$(readlink "$vf")")
    if [ $away = vfio-pci ]; then
        echo >"$vf/driver_override"
        echo "$a" >/sys/bus/pci/drivers/vfio-pci/unbind
    fi
    echo "$a" >/sys/bus/pci/drivers_probe
    expect_eq "$a driver (given back to igbvf)" "$(driver_of "$vf")" igbvf
done
expect_eq "leases" "$(lease_count)" 0

must vfpool pool delete gold
must vfpool nic restore "$nic"
