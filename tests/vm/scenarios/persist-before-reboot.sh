# First boot of config reboot: split, then `host persist` records the split in the state
# directory, which is an ext4 disk that the second boot mounts again.
. /vmtest/lib.sh

need_state_disk
need_pfs 1
set -- $(pfs | head -n1)
nic=$1
dir=$(pf_dir "$nic")

must vfpool nic split "$nic" --vfs 3 --autoprobe off
expect_eq "sriov_numvfs" "$(cat "$dir/sriov_numvfs")" 3
# The boot unit goes to a scratch root: there is no systemd here, only the record matters.
must vfpool host persist --root /tmp/persist-root
[ -s /var/lib/vfpool/desired.json ] || fail "host persist wrote no /var/lib/vfpool/desired.json"
cat /var/lib/vfpool/desired.json; echo
sync
