# First boot of config reboot: split, then `host persist` records the split in the state
# directory, which is an ext4 disk that the second boot mounts again. Two leases go into the
# same directory's ledger: a VM lease with MAC, VLAN and trust, and a container lease whose
# netns (podx, in /run) will not survive the reboot; a third is acquired and released. The
# boot ends with a power cut right after the last command returned: no sync, the page cache
# lost, so the next boot sees only what vfpool made durable before answering.
. /vmtest/lib.sh

need_state_disk
use_first_pf

# As on a real host, the PF is up (vfpool counts VFs of a PF without link as unhealthy).
must ip link set "$nic" up
settle_carrier "$nic"
must vfpool nic split "$nic" --vfs 3 --autoprobe off
expect_eq "sriov_numvfs" "$(cat "$dir/sriov_numvfs")" 3
# The boot unit goes to a scratch root: there is no systemd here, only the record matters.
must vfpool host persist --root /tmp/persist-root
run vfpool host desired -o json >/tmp/desired.json || fail "host desired failed (exit $_rc)"
cat /tmp/desired.json
expect_eq "recorded VF count" "$(jqf /tmp/desired.json ".[] | select(.pci == \"$pci\") | .num_vfs")" 3

must vfpool pool create gold --select "$nic"
run vfpool lease acquire --pool gold --owner vm1 --owner-kind vm --mac 02:00:00:00:05:01 \
    --vlan 42 --trust on -o json >/tmp/vm1.json || fail "lease acquire for vm1 failed (exit $_rc)"
cat /tmp/vm1.json
vf_info "$nic" "$(jqf /tmp/vm1.json .vf_index)"
expect_eq "vm1's VF mac" "$(vf address)" 02:00:00:00:05:01
expect_eq "vm1's VF vlan" "$(vf vlan_list.0.vlan)" 42
expect_eq "vm1's VF trust" "$(vf trust)" true
must ip netns add podx
must vfpool lease acquire --pool gold --owner podx --owner-kind container --netns /run/netns/podx
must vfpool lease acquire --pool gold --owner vm2 --owner-kind vm --vlan 43
expect_eq "leases" "$(lease_count)" 3
must vfpool lease release vm2
expect_eq "leases" "$(lease_count)" 2
expect_eq "free_vfs" "$(free_vfs "$nic")" 1
# The last change is an acquire: its answer must be on disk.
must vfpool lease release podx
must vfpool lease acquire --pool gold --owner podx --owner-kind container --netns /run/netns/podx
power_cut_after
