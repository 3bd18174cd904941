# The sysfs manifest of a real igb PF split into 7 VFs (autoprobe on) goes to the host, which
# diffs it against the simulator's manifest of the same split (xtask checks::fidelity).
. /vmtest/lib.sh

use_first_pf

must vfpool nic split "$nic" --vfs 7 --autoprobe on
expect_eq "sriov_numvfs" "$(cat "$dir/sriov_numvfs")" 7
# igbvf binds while the split runs; give the VF netdevs a moment to register.
tries=0
while [ "$(ls -d "$dir"/virtfn*/net/* 2>/dev/null | wc -l)" -lt 7 ] && [ $tries -lt 50 ]; do
    sleep 0.1
    tries=$((tries + 1))
done
run vfpool debug sysfs-manifest "$nic" >/tmp/manifest || fail "vfpool debug sysfs-manifest failed (exit $_rc)"
cat /tmp/manifest
[ -s /tmp/manifest ] || fail "the manifest is empty"
vm_data manifest </tmp/manifest
must vfpool nic restore "$nic"
