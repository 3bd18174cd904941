# vfpool killed at every fault point in the middle of acquiring or releasing a lease on a real
# igb PF (VFPOOL_FAULT makes the process SIGKILL itself). Each crash must be real: exit 137,
# the process says it reached that very point, and the half-done state is visible before
# `lease gc` (the lease row in `acquiring`/`releasing`; the VF's MAC/VLAN/trust as far as the
# step had got, read from the PF with `ip -j link`). Then `lease gc` leaves no lease and no
# VF keeps the half-applied MAC/VLAN/trust. With an IOMMU, also crashes after binding
# vfio-pci and after binding it back. Then a lease whose VF was destroyed and made again
# behind vfpool's back is dropped by gc, and a lease whose container netns is gone is
# released by gc.
. /vmtest/lib.sh

use_first_pf

split_into_pool 3 gold

clean_after_gc() { # what
    must vfpool lease gc
    expect_eq "leases after gc ($1)" "$(lease_count)" 0
    expect_vfs_as "$nic" /tmp/vfs-before "after gc ($1)"
    expect_eq "free_vfs after gc ($1)" "$(free_vfs "$nic")" 3
}

# The one lease of owner `crash`, left behind in state $1 by the killed process; reads its
# VF with vf_info and sets $crash_vf (its index) and $crash_pci.
expect_crash_row() { # state what
    vfpool lease list -o json >/tmp/crash.json || fail "lease list failed"
    expect_eq "lease rows left by the crash ($2)" \
        "$(jqf /tmp/crash.json '[.[] | "\(.owner):\(.state)"] | join(",")')" "crash:$1"
    crash_vf=$(jqf /tmp/crash.json '.[0].vf_index')
    crash_pci=$(jqf /tmp/crash.json '.[0].vf_pci')
    vf_info "$nic" "$crash_vf" >/dev/null
}

# MAC, VLAN and trust of the VF last read by vf_info, as `mac/vlan/trust`.
vf_state() { echo "$(vf address)/$(vf vlan_list.0.vlan 0)/$(vf trust)"; }

note "acquire: MAC 02:00:00:00:02:01, VLAN 200, trust on are set in that order"
for point in acquire:after-row acquire:mid-pf acquire:after-pf acquire:after-netdev; do
    note "crash at $point"
    must_crash_at "$point" vfpool lease acquire --pool gold --owner crash \
        --mac 02:00:00:00:02:01 --vlan 200 --trust on
    expect_crash_row acquiring "$point"
    case $point in
        acquire:after-row)
            # Nothing touched yet: the VF is as it was.
            expect_vfs_as "$nic" /tmp/vfs-before "before gc ($point)" ;;
        acquire:mid-pf)
            # The first PF-side knob (the MAC) only.
            expect_eq "VF before gc ($point)" "$(vf_state)" 02:00:00:00:02:01/0/false ;;
        *)
            expect_eq "VF before gc ($point)" "$(vf_state)" 02:00:00:00:02:01/200/true ;;
    esac
    clean_after_gc "$point"
done

note "release of a lease with MAC 02:00:00:00:02:02, VLAN 300, trust on"
for point in release:after-mark release:mid-pf release:after-pf release:after-netdev \
    release:after-driver; do
    note "crash at $point"
    must vfpool lease acquire --pool gold --owner crash --mac 02:00:00:00:02:02 --vlan 300 --trust on
    must_crash_at "$point" vfpool lease release crash
    expect_crash_row releasing "$point"
    case $point in
        release:after-mark)
            expect_eq "VF before gc ($point)" "$(vf_state)" 02:00:00:00:02:02/300/true ;;
        release:mid-pf)
            # One PF-side knob undone, not all of them.
            got=$(vf_state)
            [ "$got" != 02:00:00:00:02:02/300/true ] ||
                fail "VF before gc ($point): nothing was undone ($got)"
            case $got in
                */0/false) fail "VF before gc ($point): everything was undone ($got)" ;;
            esac
            echo "ok: VF before gc ($point) half undone: $got" ;;
        *)
            # The PF side is undone; only the row is left.
            expect_eq "VF VLAN/trust before gc ($point)" "$(vf vlan_list.0.vlan 0)/$(vf trust)" 0/false ;;
    esac
    clean_after_gc "$point"
done

if [ "$VMTEST_IOMMU" = 1 ]; then
    note "crash after binding vfio-pci"
    must_crash_at acquire:after-driver vfpool lease acquire --pool gold --owner crash \
        --driver vfio-pci
    expect_crash_row acquiring acquire:after-driver
    expect_eq "driver before gc (acquire:after-driver)" \
        "$(driver_of "/sys/bus/pci/devices/$crash_pci")" vfio-pci
    clean_after_gc acquire:after-driver
    for vf in "$dir"/virtfn*; do
        expect_eq "${vf##*/} driver after gc" "$(driver_of "$vf")" igbvf
    done

    note "crash after binding igbvf back on release"
    must vfpool lease acquire --pool gold --owner crash --driver vfio-pci --vlan 310
    must_crash_at release:after-driver vfpool lease release crash
    expect_crash_row releasing "release:after-driver (vfio-pci)"
    expect_eq "driver before gc (release:after-driver)" \
        "$(driver_of "/sys/bus/pci/devices/$crash_pci")" igbvf
    expect_eq "VF VLAN before gc (release:after-driver)" "$(vf vlan_list.0.vlan 0)" 0
    clean_after_gc "release:after-driver (vfio-pci)"
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
