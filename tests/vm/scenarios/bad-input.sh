# Asking for more VFs than the NIC has fails with one line naming the valid range, and
# changes nothing, whether the NIC had no VFs or some.
. /vmtest/lib.sh

use_first_pf

too_many() {
    must_fail vfpool nic split "$nic" --vfs 8
    expect_one_line
    case "$ERR" in
        *7*) echo "ok: the error names the range" ;;
        *) fail "the error does not name the range 0..7: $ERR" ;;
    esac
}

note "--vfs 8 on a NIC without VFs"
too_many
expect_eq "sriov_numvfs" "$(cat "$dir/sriov_numvfs")" 0

note "--vfs 8 on a NIC with 3 VFs"
must vfpool nic split "$nic" --vfs 3
too_many
expect_eq "sriov_numvfs" "$(cat "$dir/sriov_numvfs")" 3
expect_eq "virtfn links" "$(virtfn_count "$dir")" 3

note "an unknown NIC"
must_fail vfpool nic split nosuchnic0 --vfs 1
expect_one_line
must vfpool nic restore "$nic"
