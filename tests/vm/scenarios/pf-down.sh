# Issue 9: an acquire on a PF left down. With the PF administratively down (`--keep-link`
# leaves it so) every VF is unhealthy and the acquire fails with exit 6, saying why
# ("administratively down"). `nic split` without `--keep-link` brings the PF up, and then the
# acquire works.
. /vmtest/lib.sh

use_first_pf
pf_up() { ip -j link show "$nic" | jq -r '.[0].flags | index("UP") != null'; }

must ip link set "$nic" down
must vfpool nic split "$nic" --vfs 7 --keep-link
expect_eq "sriov_numvfs" "$(cat "$dir/sriov_numvfs")" 7
expect_eq "$nic UP after split --keep-link" "$(pf_up)" false
must vfpool pool create down --select "$nic"
must_fail vfpool lease acquire --pool down --owner o --mac 02:00:00:00:0d:01
expect_eq "acquire on a down PF: exit status" "$_rc" 6
expect_one_line
printf '%s\n' "$ERR" | grep -q "PF $nic is administratively down" ||
    fail "the exhaustion error does not say that PF $nic is administratively down: $ERR"
printf '%s\n' "$ERR" | grep -q "7 unhealthy" || fail "the error does not count 7 unhealthy VFs: $ERR"
echo "ok: the error says why"
expect_eq "leases after the refused acquire" "$(lease_count)" 0

must vfpool nic restore "$nic"
expect_eq "sriov_numvfs after restore" "$(cat "$dir/sriov_numvfs")" 0
expect_eq "$nic UP after restore" "$(pf_up)" false
must vfpool nic split "$nic" --vfs 7
expect_eq "$nic UP after split" "$(pf_up)" true
ip -j link show "$nic" | jq -c -M '.[0] | {flags, operstate}'
# No wait here: the split waits for the link of a PF it brought up (an acquire right after
# it failed with exit 6, "lost carrier", in one run of two before it did).
run vfpool lease acquire --pool down --owner o --mac 02:00:00:00:0d:02 -o json >/tmp/lease.json ||
    fail "lease acquire after the split brought $nic up failed (exit $_rc)"
i=$(jqf /tmp/lease.json .vf_index)
vf_info "$nic" "$i"
expect_eq "vf $i mac" "$(vf address)" 02:00:00:00:0d:02
must vfpool lease release o
must vfpool pool delete down
must vfpool nic restore "$nic"
