# `vfpool nic split` / `restore` on a real igb PF: 7 VFs with igbvf bound, restore to 0,
# --autoprobe off leaves the VFs without a driver, 7 -> 3 goes through 0 (the kernel refuses a
# direct change), and several NICs in one command.
. /vmtest/lib.sh

use_first_pf

# `nic show NIC -o json`, flattened into /tmp/show.flat (see json_flat).
show() {
    vfpool nic show "$1" -o json >/tmp/show.json || fail "vfpool nic show $1 -o json failed"
    json_flat /tmp/show.json /tmp/show.flat
}
get() { jget /tmp/show.flat "$1"; }

note "split $nic into 7 VFs"
must vfpool nic split "$nic" --vfs 7
expect_eq "sriov_numvfs" "$(cat "$dir/sriov_numvfs")" 7
expect_eq "virtfn links" "$(virtfn_count "$dir")" 7
show "$nic"
cat /tmp/show.json
expect_eq "show state" "$(get state)" virtualized
expect_eq "show num_vfs" "$(get num_vfs)" 7
expect_eq "show vfs" "$(jqf /tmp/show.json '.vfs | length')" 7
i=0
while [ $i -lt 7 ]; do
    vf=$(readlink -f "$dir/virtfn$i")
    expect_eq "vf $i index" "$(get "vfs.$i.index")" $i
    expect_eq "vf $i pci" "$(get "vfs.$i.pci")" "${vf##*/}"
    expect_eq "vf $i driver" "$(get "vfs.$i.driver")" "$(driver_of "$vf")"
    expect_eq "vf $i driver (autoprobe on)" "$(driver_of "$vf")" igbvf
    netdev=$(ls "$vf/net" 2>/dev/null | head -n1)
    expect_eq "vf $i netdev" "$(get "vfs.$i.netdev")" "$netdev"
    i=$((i + 1))
done

note "restore $nic by its PCI address"
must vfpool nic restore "$pci"
expect_eq "sriov_numvfs after restore" "$(cat "$dir/sriov_numvfs")" 0
expect_eq "virtfn links after restore" "$(virtfn_count "$dir")" 0
show "$nic"
expect_eq "show state after restore" "$(get state)" virtualizable

note "split again with --autoprobe off"
must vfpool nic split "$nic" --vfs 7 --autoprobe off
expect_eq "sriov_numvfs" "$(cat "$dir/sriov_numvfs")" 7
expect_eq "sriov_drivers_autoprobe" "$(cat "$dir/sriov_drivers_autoprobe")" 0
for vf in "$dir"/virtfn*; do
    expect_eq "${vf##*/} driver (autoprobe off)" "$(driver_of "$vf")" ""
done
show "$nic"
expect_eq "show: VFs with a driver" "$(jqf /tmp/show.json '[.vfs[] | select(.driver != null and .driver != "")] | length')" 0

note "7 -> 3 through vfpool"
must vfpool nic split "$nic" --vfs 3
expect_eq "sriov_numvfs" "$(cat "$dir/sriov_numvfs")" 3
expect_eq "virtfn links" "$(virtfn_count "$dir")" 3
must vfpool nic restore "$nic"
expect_eq "sriov_numvfs after restore" "$(cat "$dir/sriov_numvfs")" 0

if [ "$VMTEST_PFS" -ge 2 ]; then
    set -- $(pfs | cut -d' ' -f1 | head -n2)
    note "split $1 and $2 in one command"
    must vfpool nic split "$1" "$2" --vfs 2
    for n in "$1" "$2"; do
        expect_eq "$n sriov_numvfs" "$(cat "$(pf_dir "$n")/sriov_numvfs")" 2
        must vfpool nic restore "$n"
        expect_eq "$n sriov_numvfs after restore" "$(cat "$(pf_dir "$n")/sriov_numvfs")" 0
    done
fi
