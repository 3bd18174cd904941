# `vfpool nic list` against the real kernel's sysfs, and `vfpool host check` against the
# machine's IOMMU: pass in config iommu (exit 0), not in noiommu (exit non-zero).
. /vmtest/lib.sh

need_pfs "$VMTEST_PFS"
run vfpool nic list -o json >/tmp/list.json || fail "vfpool nic list -o json failed (exit $_rc)"
cat /tmp/list.json
jq -e 'type == "array"' /tmp/list.json >/dev/null || fail "nic list -o json is not a JSON array"

pfs >/tmp/pfs
while read -r nic pci; do
    dir=$(pf_dir "$nic")
    jq -c --arg n "$nic" '[.[] | select(.name == $n)]' /tmp/list.json >/tmp/nic.json
    expect_eq "nic list entries named $nic" "$(jqf /tmp/nic.json length)" 1
    json_flat /tmp/nic.json /tmp/nic.flat
    field() { jget /tmp/nic.flat "0.$1"; }
    expect_eq "$nic pci" "$(field pci)" "$pci"
    expect_eq "$nic driver" "$(field driver)" "$(driver_of "$dir")"
    expect_eq "$nic state" "$(field state)" virtualizable
    expect_eq "$nic total_vfs" "$(field total_vfs)" "$(cat "$dir/sriov_totalvfs")"
    expect_eq "$nic total_vfs (igb)" "$(field total_vfs)" 7
    expect_eq "$nic num_vfs" "$(field num_vfs)" "$(cat "$dir/sriov_numvfs")"
    expect_eq "$nic free_vfs" "$(field free_vfs)" 0
    expect_eq "$nic mtu" "$(field mtu)" "$(cat "/sys/class/net/$nic/mtu")"
    expect_eq "$nic mac" "$(field mac)" "$(cat "/sys/class/net/$nic/address")"
    numa=$(cat "$dir/numa_node")
    case "$(field numa_node)" in
        "$numa") echo "ok: $nic numa_node = $numa" ;;
        null) [ "$numa" = -1 ] || fail "$nic numa_node: got null, sysfs says $numa" ;;
        *) fail "$nic numa_node: got '$(field numa_node)', sysfs says $numa" ;;
    esac
    case "$(cat "$dir/sriov_drivers_autoprobe"):$(field autoprobe)" in
        1:true | 1:on | 0:false | 0:off) echo "ok: $nic autoprobe = $(field autoprobe)" ;;
        *) fail "$nic autoprobe: got '$(field autoprobe)', sysfs says $(cat "$dir/sriov_drivers_autoprobe")" ;;
    esac
    case "$(field model)" in
        *82576*) echo "ok: $nic model = $(field model)" ;;
        *) fail "$nic model: got '$(field model)', want an 82576" ;;
    esac
done </tmp/pfs

echo "\$ vfpool host check -o json"
vfpool host check -o json >/tmp/check.json
rc=$?
echo "[exit $rc]"
cat /tmp/check.json
check() { jqf /tmp/check.json "[.checks[] | select(.name == \"$1\") | .status] | first // \"missing\""; }
if [ "$VMTEST_IOMMU" = 1 ]; then
    expect_eq "host check iommu-ready" "$(check iommu-ready)" pass
    expect_eq "host check interrupt-remapping" "$(check interrupt-remapping)" pass
    expect_eq "host check vfio-pci" "$(check vfio-pci)" pass
    expect_eq "host check vm_ready" "$(jqf /tmp/check.json .vm_ready)" true
    expect_eq "host check exit status" "$rc" 0
else
    [ "$(check iommu-ready)" != pass ] || fail "host check iommu-ready: pass, but this machine has no IOMMU"
    [ "$(check iommu-ready)" != missing ] || fail "host check has no iommu-ready check"
    [ "$(check interrupt-remapping)" != pass ] || fail "host check interrupt-remapping: pass without an IOMMU"
    expect_eq "host check vm_ready" "$(jqf /tmp/check.json .vm_ready)" false
    [ "$rc" != 0 ] || fail "host check exited 0 although vm_ready is false"
fi
# The next boot's setting is reported beside the running kernel's status, whatever the guest's
# boot loader.
[ "$(check iommu-enabled)" != missing ] || fail "host check has no iommu-enabled check"
expect_eq "host check iommu_ready" "$(jqf /tmp/check.json .iommu_ready)" "$([ "$VMTEST_IOMMU" = 1 ] && echo true || echo false)"
