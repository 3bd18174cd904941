# The lab itself, without vfpool: every igb PF offers 7 VFs, writing sriov_numvfs creates
# them (with virtfn links and igbvf bound), and writing 0 removes them. When this fails, the
# other scenarios' failures say nothing about vfpool.
. /vmtest/lib.sh

expect_eq "PF count" "$(pfs | wc -l)" "$VMTEST_PFS"
pfs | while read -r nic pci; do
    dir=$(pf_dir "$nic")
    note "$nic ($pci)"
    expect_eq "$nic driver" "$(driver_of "$dir")" igb
    expect_eq "$nic sriov_totalvfs" "$(cat "$dir/sriov_totalvfs")" 7
    expect_eq "$nic sriov_numvfs" "$(cat "$dir/sriov_numvfs")" 0
    must sh -c "echo 7 > $dir/sriov_numvfs"
    expect_eq "$nic virtfn links" "$(virtfn_count "$dir")" 7
    for vf in "$dir"/virtfn*; do
        expect_eq "${vf##*/} driver" "$(driver_of "$vf")" igbvf
    done
    must sh -c "echo 0 > $dir/sriov_numvfs"
    expect_eq "$nic virtfn links after 0" "$(virtfn_count "$dir")" 0
done || exit 1
