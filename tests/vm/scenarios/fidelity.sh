# The sysfs manifest of a real igb PF split into 7 VFs (autoprobe on) goes to the host, which
# diffs it against the simulator's manifest of the same split (xtask checks::fidelity). Then
# the PF driver's own answers: a fresh VF's IFLA_VFINFO_LIST entry and the result (ok or
# errno) of each `ip link set PF vf ...` in fidelity-vf.txt, which the host compares with that
# file and the netlink simulator's unit test replays.
. /vmtest/lib.sh

use_first_pf

must ip link set "$nic" up
settle_carrier "$nic"
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

# A fresh VF as the PF reports it, in fidelity-vf.txt's words.
settle_carrier "$nic"
ip -j link show "$nic" | jq -r '.[0].vfinfo_list[] | select(.vf == 6) |
    "fresh vlan=\(.vlan_list[0].vlan // 0) qos=\(.vlan_list[0].qos // 0) proto=\(.vlan_list[0].protocol // "802.1Q") spoofchk=\(.spoofchk) trust=\(.trust) link_state=\(.link_state) min_tx=\(.rate.min_tx) max_tx=\(.rate.max_tx)"' \
    >/tmp/vf-answers || fail "cannot read $nic's VFs"
link=up
grep -v '^#' /vmtest/scenarios/fidelity-vf.txt | grep -v '^fresh' | sed 's/ => .*//' |
    while read -r want_link index args; do
        if [ "$want_link" != "$link" ]; then
            ip link set "$nic" "$want_link" || fail "cannot set $nic $want_link"
            if [ "$want_link" = up ]; then settle_carrier "$nic" >/dev/null; else sleep 1; fi
            link=$want_link
        fi
        # shellcheck disable=SC2086
        out=$(ip link set "$nic" vf "$index" $args 2>&1)
        case $? in
            0) got=ok ;;
            *)
                case $out in
                    *"Operation not supported"*) got=EOPNOTSUPP ;;
                    *"Invalid argument"*) got=EINVAL ;;
                    *"Protocol not supported"*) got=EPROTONOSUPPORT ;;
                    *) got="other: $out" ;;
                esac
                ;;
        esac
        echo "$want_link $index $args => $got"
    done >>/tmp/vf-answers
cat /tmp/vf-answers
vm_data vf-answers </tmp/vf-answers
must ip link set "$nic" up
must vfpool nic restore "$nic"

# More layouts, each replayed on the simulator by the host (checks::fidelity, LAYOUTS):
# autoprobe off, one VF leased to vfio-pci beside six on igbvf, and no VFs at all.
# The PF's link as it settles after the reset a change of sriov_numvfs causes (the
# simulator has no such reset).
manifest_of() { # key
    settle_carrier "$nic"
    run vfpool debug sysfs-manifest "$nic" >/tmp/manifest || fail "vfpool debug sysfs-manifest failed (exit $_rc)"
    [ -s /tmp/manifest ] || fail "the $1 manifest is empty"
    vm_data "$1" </tmp/manifest
}
must vfpool nic split "$nic" --vfs 7 --autoprobe off
manifest_of manifest-autoprobe-off
must vfpool nic restore "$nic"
must vfpool nic split "$nic" --vfs 7 --autoprobe on
settle_carrier "$nic"
must vfpool pool create fid --select "$nic"
must vfpool lease acquire --pool fid --owner v --driver vfio-pci
manifest_of manifest-vfio
must vfpool lease release v
must vfpool pool delete fid
must vfpool nic restore "$nic"
manifest_of manifest-zero

# sysfs writes as fidelity-sysfs.txt lists them, each answered ok or with the kernel's errno.
errno_of() {
    case $1 in
        *"Invalid argument"*) echo EINVAL ;;
        *"Device or resource busy"*) echo EBUSY ;;
        *"No such device"*) echo ENODEV ;;
        *"No such file or directory"*) echo ENOENT ;;
        *"Cannot allocate memory"*) echo ENOMEM ;;
        *"Numerical result out of range"*) echo ERANGE ;;
        *"File exists"*) echo EEXIST ;;
        *"Operation not supported"*) echo EOPNOTSUPP ;;
        *) echo "other: $1" ;;
    esac
}
vf_addr() { basename "$(readlink "$dir/virtfn${1#VF}")"; }
sys_path() {
    case $1 in
        PF/*) echo "/sys/bus/pci/devices/$pci/${1#PF/}" ;;
        VF*/*) _v=${1%%/*} && echo "/sys/bus/pci/devices/$(vf_addr "$_v")/${1#*/}" ;;
        *) echo "/sys/bus/pci/$1" ;;
    esac
}
grep -v '^#' /vmtest/scenarios/fidelity-sysfs.txt | sed 's/ => .*//' | while read -r what arg; do
    case $what in
        driver) got=$(driver_of "/sys/bus/pci/devices/$(vf_addr "$arg")") && got=${got:-none} ;;
        vfs) got=$(virtfn_count "$dir") ;;
        *)
            case $arg in VF*) value=$(vf_addr "$arg") ;; *) value=$arg ;; esac
            path=$(sys_path "$what")
            if out=$( (echo "$value" >"$path") 2>&1); then got=ok; else got=$(errno_of "$out"); fi
            # A write's effects (a probe, VFs appearing) may take a moment under TCG.
            sleep 0.1
            ;;
    esac
    if [ -n "$arg" ]; then echo "$what $arg => $got"; else echo "$what => $got"; fi
done >/tmp/sysfs-answers
cat /tmp/sysfs-answers
vm_data sysfs-answers </tmp/sysfs-answers
