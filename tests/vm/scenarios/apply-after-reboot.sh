# Second boot of config reboot, after a power cut: the kernel came up with no VFs; the record
# and the ledger on the state disk survived, with every acquire and release that had returned
# (vm2's release, podx's last acquire). `host apply` (what the boot unit runs) re-creates the split exactly,
# re-applies the configuration of the leases whose VF exists again, then runs `lease gc`,
# which releases the container lease (its netns did not survive) and keeps the VM lease;
# releasing that puts its VF back to the kernel's defaults.
. /vmtest/lib.sh

need_state_disk
use_first_pf

run vfpool host desired -o json >/tmp/desired.json || fail "host desired failed (exit $_rc)"
cat /tmp/desired.json
expect_eq "recorded VF count" "$(jqf /tmp/desired.json ".[] | select(.pci == \"$pci\") | .num_vfs")" 3
expect_eq "sriov_numvfs after reboot" "$(cat "$dir/sriov_numvfs")" 0
run vfpool lease list -o json >/tmp/leases.json || fail "lease list failed (exit $_rc)"
cat /tmp/leases.json
expect_eq "leases after reboot" "$(jqf /tmp/leases.json '[.[].owner] | sort | join(",")')" podx,vm1
vm_index=$(jqf /tmp/leases.json '.[] | select(.owner == "vm1") | .vf_index')
[ -n "$vm_index" ] || fail "the ledger has no lease for vm1"
[ ! -e /run/netns/podx ] || fail "/run/netns/podx survived the reboot"
states() { vfpool lease list -o json | jq -r '[.[] | "\(.owner):\(.state)"] | join(",")'; }
expect_eq "lease states before apply (no VFs)" "$(states)" vm1:stale,podx:stale

run vfpool host apply --timeout 60 -o json >/tmp/apply.json || fail "host apply failed (exit $_rc)"
cat /tmp/apply.json
expect_eq "sriov_numvfs after apply" "$(cat "$dir/sriov_numvfs")" 3
expect_eq "sriov_drivers_autoprobe after apply" "$(cat "$dir/sriov_drivers_autoprobe")" 0
for vf in "$dir"/virtfn*; do
    expect_eq "${vf##*/} driver" "$(driver_of "$vf")" ""
done
action() { jqf /tmp/apply.json "[.leases[]? | select(.owner == \"$1\") | .action] | join(\",\")"; }
expect_eq "host apply: vm1" "$(action vm1)" reapplied
expect_eq "host apply: podx" "$(action podx)" reapplied
note "apply's gc releases the container lease whose netns is gone, keeps the VM's"
expect_eq "gc actions" "$(jqf /tmp/apply.json '[.gc.actions[] | "\(.owner):\(.action)"] | join(",")')" \
    podx:released-owner-gone
case "$(jqf /tmp/apply.json '.gc.actions[0].reason')" in
    *podx*) echo "ok: gc says podx's netns is gone" ;;
    *) fail "gc's reason does not name the netns: $(jqf /tmp/apply.json '.gc.actions[0].reason')" ;;
esac
expect_eq "gc kept" "$(jqf /tmp/apply.json .gc.kept)" 1
expect_eq "lease states after apply" "$(states)" vm1:active
vf_info "$nic" "$vm_index"
expect_eq "vm1's VF mac after apply" "$(vf address)" 02:00:00:00:05:01
expect_eq "vm1's VF vlan after apply" "$(vf vlan_list.0.vlan 0)" 42
expect_eq "vm1's VF trust after apply" "$(vf trust)" true

note "apply again changes nothing, and says so once per lease left"
run vfpool host apply --timeout 60 >/tmp/apply.txt || fail "the second host apply failed (exit $_rc)"
cat /tmp/apply.txt
expect_eq "sriov_numvfs after a second apply" "$(cat "$dir/sriov_numvfs")" 3
expect_eq "lines about vm1" "$(grep -c '^lease vm1 ' /tmp/apply.txt)" 1
expect_eq "lines about podx" "$(grep -c '^lease podx ' /tmp/apply.txt)" 0
vf_info "$nic" "$vm_index"
expect_eq "vm1's VF mac after a second apply" "$(vf address)" 02:00:00:00:05:01
expect_eq "vm1's VF vlan after a second apply" "$(vf vlan_list.0.vlan 0)" 42

note "a gc of its own has nothing left to do"
run vfpool lease gc -o json >/tmp/gc.json || fail "lease gc failed (exit $_rc)"
cat /tmp/gc.json
expect_eq "gc actions" "$(jqf /tmp/gc.json '.actions | length')" 0
expect_eq "leases after gc" "$(states)" vm1:active

note "release vm1: its VF is back to the kernel's defaults, like a VF never leased"
must vfpool lease release vm1
expect_eq "leases after release" "$(lease_count)" 0
vf_info "$nic" "$vm_index"
expect_eq "vm1's VF mac after release" "$(vf address)" 00:00:00:00:00:00
expect_eq "vm1's VF vlan after release" "$(vf vlan_list.0.vlan 0)" 0
expect_eq "vm1's VF trust after release" "$(vf trust)" false
expect_eq "distinct VF configurations" \
    "$(ip -j link show "$nic" | jq '[.[0].vfinfo_list[] | del(.vf)] | unique | length')" 1
must vfpool pool delete gold
must vfpool nic restore "$nic"
