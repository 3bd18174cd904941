# Second boot of config reboot: the kernel came up with no VFs; the record on the state disk
# survived, and `host apply` (what the boot unit runs) re-creates the split exactly.
. /vmtest/lib.sh

need_state_disk
need_pfs 1
set -- $(pfs | head -n1)
nic=$1
dir=$(pf_dir "$nic")

[ -s /var/lib/vfpool/desired.json ] || fail "desired.json did not survive the reboot"
cat /var/lib/vfpool/desired.json; echo
expect_eq "sriov_numvfs after reboot" "$(cat "$dir/sriov_numvfs")" 0
must vfpool host apply --timeout 60
expect_eq "sriov_numvfs after apply" "$(cat "$dir/sriov_numvfs")" 3
expect_eq "sriov_drivers_autoprobe after apply" "$(cat "$dir/sriov_drivers_autoprobe")" 0
for vf in "$dir"/virtfn*; do
    expect_eq "${vf##*/} driver" "$(driver_of "$vf")" ""
done
note "apply again changes nothing"
must vfpool host apply --timeout 60
expect_eq "sriov_numvfs after a second apply" "$(cat "$dir/sriov_numvfs")" 3
must vfpool nic restore "$nic"
