# Issue 9: `nic split` beside `lease acquire` on real igb VFs. Each round starts an acquire
# with a MAC and, a moment later (0 to 0.3 s, varied), a split that changes the VF count
# (7 <-> 6). The PF locks serialize them: either the acquire ran first and the split is
# refused (exit 4, "leased VFs", the count unchanged), or the split ran first and the acquire
# leased one of the new VFs. Invariant after every round: an acquire that answered 0 names a
# VF that exists and carries the leased MAC in the PF's IFLA_VFINFO_LIST (a split that
# destroyed and re-created the VFs under it would leave it with igbvf's random MAC).
. /vmtest/lib.sh

use_first_pf
split_into_pool 7 race

# How much later the split starts than the acquire, round by round (a leading `-`: the
# acquire starts that much later than the split). Under TCG a split takes about 0.5 s and an
# acquire about as long, so these cover both orders and the overlaps between.
offsets="0 -0.1 0.1 -0.2 0.2 -0.3"
rounds=$(echo $offsets | wc -w)
r=0
leased=0
refused=0
split_ran=0
: >/tmp/race-bad
bad() {
    echo "VIOLATION: round $r: $*"
    echo "round $r: $*" >>/tmp/race-bad
}
for off in $offsets; do
    r=$((r + 1))
    before=$(cat "$dir/sriov_numvfs")
    if [ "$before" = 7 ]; then want=6; else want=7; fi
    mac=$(printf '02:00:00:00:09:%02x' $r)
    note "round $r: acquire --mac $mac, split --vfs $want (now $before VFs) ${off#-} s $(case $off in -*) echo before ;; *) echo after ;; esac) it"
    case $off in
        -*)
            vfpool nic split "$nic" --vfs "$want" >/tmp/split.out 2>/tmp/split.err &
            spid=$!
            sleep "${off#-}"
            vfpool lease acquire --pool race --owner o --mac "$mac" -o json >/tmp/acq.json 2>/tmp/acq.err &
            apid=$!
            ;;
        *)
            vfpool lease acquire --pool race --owner o --mac "$mac" -o json >/tmp/acq.json 2>/tmp/acq.err &
            apid=$!
            [ "$off" = 0 ] || sleep "$off"
            vfpool nic split "$nic" --vfs "$want" >/tmp/split.out 2>/tmp/split.err &
            spid=$!
            ;;
    esac
    wait $apid
    arc=$?
    wait $spid
    src=$?
    echo "acquire: exit $arc"
    cat /tmp/acq.err
    echo "split: exit $src"
    cat /tmp/split.out /tmp/split.err
    now=$(cat "$dir/sriov_numvfs")
    case $src in
        0)
            split_ran=$((split_ran + 1))
            [ "$now" = "$want" ] || bad "sriov_numvfs is $now after the split to $want"
            ;;
        4)
            refused=$((refused + 1))
            grep -q 'leased VF' /tmp/split.err || bad "the split exited 4 without naming the leased VFs"
            [ "$now" = "$before" ] || bad "sriov_numvfs is $now after the refused split (was $before)"
            ;;
        *) bad "nic split exited $src (want 0, or 4 when refused for a lease)" ;;
    esac
    if [ $arc = 0 ]; then
        leased=$((leased + 1))
        i=$(jqf /tmp/acq.json .vf_index)
        vf_pci=$(jqf /tmp/acq.json .vf_pci)
        got=$(ip -j link show "$nic" | jq -r --argjson i "$i" '.[0].vfinfo_list[] | select(.vf == $i) | .address')
        if [ "$i" -ge "$now" ]; then
            bad "the lease names VF $i, but the PF has $now VFs"
        elif [ "$vf_pci" != "$(basename "$(readlink "$dir/virtfn$i")")" ]; then
            bad "the lease names VF $i at $vf_pci, but virtfn$i is $(readlink "$dir/virtfn$i")"
        elif [ "$got" != "$mac" ]; then
            bad "the lease of VF $i answered 0, but the PF reports its MAC as $got, not $mac"
        else
            echo "ok: round $r: VF $i carries $mac"
        fi
        must vfpool lease release o
    else
        bad "lease acquire exited $arc: $(cat /tmp/acq.err)"
    fi
    expect_eq "round $r: leases left" "$(lease_count)" 0
    [ $src = 0 ] && settle_carrier "$nic"
done
if [ -s /tmp/race-bad ]; then
    cat /tmp/race-bad
    fail "$(wc -l </tmp/race-bad) violations in $rounds rounds; first: $(head -n1 /tmp/race-bad)"
fi
note "$rounds rounds: $leased leased, $split_ran splits ran, $refused refused for a lease"
# Both orders must have happened, or the rounds proved nothing about the race.
[ $refused -gt 0 ] || fail "no split was refused for a lease: no round had the acquire first"
[ $split_ran -gt 0 ] || fail "no split ran: no round had the split first"
must vfpool pool delete race
must vfpool nic restore "$nic"
