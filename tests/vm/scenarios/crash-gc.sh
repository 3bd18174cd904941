# vfpool killed at fault points in the middle of acquiring or releasing a lease on a real
# igb PF (VFPOOL_FAULT makes the process SIGKILL itself), then `lease gc`: no lease may be
# left and no VF may keep the half-applied MAC/VLAN/trust. With an IOMMU, also a crash after
# binding vfio-pci. Then a lease whose VF was destroyed and made again behind vfpool's back
# is dropped by gc, and finally a lease whose container netns is gone is released by gc.
. /vmtest/lib.sh

use_first_pf

split_into_pool 3 gold

clean_after_gc() { # what
    must vfpool lease gc
    expect_eq "leases after gc ($1)" "$(lease_count)" 0
    expect_vfs_as "$nic" /tmp/vfs-before "after gc ($1)"
    expect_eq "free_vfs after gc ($1)" "$(free_vfs "$nic")" 3
}

for point in acquire:after-row acquire:mid-pf acquire:after-pf acquire:after-netdev; do
    note "crash at $point"
    VFPOOL_FAULT=$point must_fail vfpool lease acquire --pool gold --owner crash \
        --mac 02:00:00:00:02:01 --vlan 200 --trust on
    clean_after_gc "$point"
done

for point in release:after-mark release:mid-pf release:after-pf release:after-netdev; do
    note "crash at $point"
    must vfpool lease acquire --pool gold --owner crash --mac 02:00:00:00:02:02 --vlan 300 --trust on
    VFPOOL_FAULT=$point must_fail vfpool lease release crash
    clean_after_gc "$point"
done

if [ "$VMTEST_IOMMU" = 1 ]; then
    note "crash after binding vfio-pci"
    VFPOOL_FAULT=acquire:after-driver must_fail vfpool lease acquire --pool gold --owner crash \
        --driver vfio-pci
    clean_after_gc acquire:after-driver
    for vf in "$dir"/virtfn*; do
        expect_eq "${vf##*/} driver after gc" "$(driver_of "$vf")" igbvf
    done
fi

note "the VFs are made again behind vfpool's back (sriov_numvfs to 0 and back)"
must vfpool lease acquire --pool gold --owner recreated --vlan 500 --trust on
echo 0 >"$dir/sriov_numvfs" || fail "cannot write 0 to $dir/sriov_numvfs"
echo 3 >"$dir/sriov_numvfs" || fail "cannot write 3 to $dir/sriov_numvfs"
settle_carrier "$nic"
run vfpool lease gc -o json >/tmp/gc.json || fail "lease gc failed"
cat /tmp/gc.json
expect_eq "gc action" "$(jqf /tmp/gc.json '.actions[0].action')" removed-stale
jqf /tmp/gc.json '.actions[0].reason' | grep -q 'created again' ||
    fail "gc does not say the VF was created again"
clean_after_gc "VFs made again"

note "the container's netns is gone"
must ip netns add gone
must vfpool lease acquire --pool gold --owner c-gone --owner-kind container \
    --netns /run/netns/gone --vlan 400
must ip netns del gone
clean_after_gc "netns gone"

must vfpool pool delete gold
must vfpool nic restore "$nic"
