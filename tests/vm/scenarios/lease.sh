# A lease configures its VF through the real igb PF driver (rtnetlink IFLA_VFINFO_LIST, read
# back with iproute2) and release restores it. With an IOMMU, `--driver vfio-pci` binds the
# VF to vfio-pci (a /dev/vfio group appears); without one it fails in one line and leaves no
# lease behind.
. /vmtest/lib.sh

need_pfs 1
set -- $(pfs | head -n1)
nic=$1
dir=$(pf_dir "$nic")

# The PF's view of VF $1 (ip -j link), flattened into /tmp/vf.flat.
vf_info() {
    ip -j link show "$nic" >/tmp/link.json || fail "ip -j link show $nic failed"
    jq --argjson i "$1" '.[0].vfinfo_list[] | select(.vf == $i)' /tmp/link.json >/tmp/vf.json
    [ -s /tmp/vf.json ] || fail "ip link show $nic lists no vf $1"
    cat /tmp/vf.json
    json_flat /tmp/vf.json /tmp/vf.flat
}
# A field of the VF; $2 when absent (iproute2 leaves out VLAN 0 and QoS 0).
vf() {
    _v=$(jget /tmp/vf.flat "$1")
    echo "${_v:-$2}"
}

# As on a real host, the PF is up (vfpool counts VFs of a PF without link as unhealthy, and
# the igb VF<->PF mailbox needs the PF up).
must ip link set "$nic" up
settle_carrier "$nic"
must vfpool nic split "$nic" --vfs 7
# Enabling SR-IOV resets the igb PF: its link drops and returns shortly after `nic split`
# returns, and until then vfpool counts every VF as unhealthy ("PF lost carrier"), so an
# acquire right after a split can find no free VF. Wait for the link like a careful operator.
settle_carrier "$nic"
vf_snapshot "$nic" >/tmp/vfs-before
must vfpool pool create gold --select "$nic"

note "acquire with MAC, VLAN/QoS, trust, spoofchk"
run vfpool lease acquire --pool gold --owner vm1 --owner-kind vm --mac 02:00:00:00:00:11 \
    --vlan 100 --qos 3 --trust on --spoofchk off -o json >/tmp/lease.json ||
    fail "lease acquire failed (exit $_rc)"
cat /tmp/lease.json
json_flat /tmp/lease.json /tmp/lease.flat
i=$(jget /tmp/lease.flat vf_index)
vf_pci=$(jget /tmp/lease.flat vf_pci)
expect_eq "leased VF pci" "$vf_pci" "$(basename "$(readlink "$dir/virtfn$i")")"
vf_info "$i"
expect_eq "vf $i mac" "$(vf address)" 02:00:00:00:00:11
expect_eq "vf $i vlan" "$(vf vlan_list.0.vlan)" 100
expect_eq "vf $i qos" "$(vf vlan_list.0.qos)" 3
expect_eq "vf $i trust" "$(vf trust)" true
expect_eq "vf $i spoofchk" "$(vf spoofchk)" false
run vfpool lease list -o json >/tmp/leases.json || fail "lease list failed"
expect_eq "leases" "$(jqf /tmp/leases.json length)" 1
expect_eq "free_vfs" "$(vfpool nic show "$nic" -o json | jq -r .free_vfs)" 6

note "release restores the VF"
must vfpool lease release vm1
vf_info "$i"
expect_eq "vf $i vlan after release" "$(vf vlan_list.0.vlan 0)" 0
expect_eq "vf $i trust after release" "$(vf trust)" false
expect_eq "vf $i spoofchk after release" "$(vf spoofchk)" true
expect_vfs_as "$nic" /tmp/vfs-before "after release"
expect_eq "free_vfs after release" "$(vfpool nic show "$nic" -o json | jq -r .free_vfs)" 7

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
    expect_eq "error lines" "$(printf '%s\n' "$ERR" | wc -l)" 1
    expect_eq "leases after the failed acquire" "$(vfpool lease list -o json | jq length)" 0
    expect_eq "free_vfs after the failed acquire" "$(vfpool nic show "$nic" -o json | jq -r .free_vfs)" 7
    for vf in "$dir"/virtfn*; do
        expect_eq "${vf##*/} driver after the failed acquire" "$(driver_of "$vf")" igbvf
    done
fi

must vfpool pool delete gold
must vfpool nic restore "$nic"
