# The VM layer on the real kernel (iommu config: vfio-pci needs the IOMMU). A PF split in 2,
# an SR-IOV L2 with VLAN 100 on it, an L3; vm1 with a VF NIC and a vNIC. `vm start` leases
# a VF: bound to vfio-pci (sysfs driver link), the igb PF reports the NIC's MAC and VLAN 100
# on it (IFLA_VFINFO_LIST), `vm xml` names its PCI address as a managed hostdev and the vNIC
# as a macvtap on PF.100. `vm stop` gives it back: igbvf with a netdev, VLAN 0, the MAC no
# longer pinned. With every VF taken, `vm start` exits 6 and leases nothing. The libvirt hook,
# run as libvirtd runs it with vm1's domain XML under another name on stdin, refuses the VF
# vm1 holds with exit 4 and leases nothing. Then vm1's VF NIC and vNIC on the L2 ping each
# other (see that step for what stands in for each).
. /vmtest/lib.sh

use_first_pf

must ip link set "$nic" up
settle_carrier "$nic"
must vfpool nic split "$nic" --vfs 2
settle_carrier "$nic"

note "an SR-IOV L2 with VLAN 100 on $nic, an L3 on it"
run vfpool l2 create l2a --nic "$nic" --vlan 100 --sriov -o json >/tmp/l2.json ||
    fail "l2 create failed (exit $_rc)"
cat /tmp/l2.json
expect_eq "l2 sriov" "$(jqf /tmp/l2.json .sriov)" true
expect_eq "l2 vlan" "$(jqf /tmp/l2.json .vlan)" 100
run vfpool l3 create n1 --l2 l2a --cidr 192.168.10.0/24 --gateway 192.168.10.1 \
    --range 192.168.10.10-192.168.10.20 -o json >/tmp/l3.json ||
    fail "l3 create failed (exit $_rc)"
cat /tmp/l3.json
expect_eq "l3 sriov" "$(jqf /tmp/l3.json .sriov)" true

mac=02:00:00:00:05:01
vmac=02:00:00:00:05:02
note "vm1: a VF NIC ($mac) and a vNIC ($vmac)"
run vfpool vm create vm1 --nic "l3=n1,sriov,mac=$mac" --nic "l3=n1,mac=$vmac" -o json \
    >/tmp/vm.json || fail "vm create failed (exit $_rc)"
cat /tmp/vm.json
expect_eq "vm1 state" "$(jqf /tmp/vm.json .state)" stopped
expect_eq "nic0 type" "$(jqf /tmp/vm.json '.nics[0].type')" vf
expect_eq "nic1 type" "$(jqf /tmp/vm.json '.nics[1].type')" vnic

note "vm start: a VF on vfio-pci with the NIC's MAC and the L2's VLAN"
run vfpool vm start vm1 -o json >/tmp/vm.json || fail "vm start vm1 failed (exit $_rc)"
cat /tmp/vm.json
expect_eq "vm1 state" "$(jqf /tmp/vm.json .state)" running
vf_pci=$(jqf /tmp/vm.json '.nics[0].vf // ""')
[ -n "$vf_pci" ] || fail "vm start: nic0 has no VF"
expect_eq "nic0 address" "$(jqf /tmp/vm.json '.nics[0].address')" 192.168.10.10
expect_eq "nic1 address" "$(jqf /tmp/vm.json '.nics[1].address')" 192.168.10.11
expect_eq "nic1 vf" "$(jqf /tmp/vm.json '.nics[1].vf')" null
i=""
for vf in "$dir"/virtfn*; do
    [ "$(basename "$(readlink "$vf")")" = "$vf_pci" ] && i=${vf##*/virtfn}
done
[ -n "$i" ] || fail "VF $vf_pci of vm1 is not a virtfn of $nic"
vf_dir=/sys/bus/pci/devices/$vf_pci
expect_eq "VF $vf_pci driver while vm1 runs" "$(driver_of "$vf_dir")" vfio-pci
vfpool lease list -o json >/tmp/leases.json
expect_eq "leases while vm1 runs" "$(jqf /tmp/leases.json length)" 1
expect_eq "the lease's owner" "$(jqf /tmp/leases.json '.[0].owner')" vm/vm1/nic0
expect_eq "the lease's VF" "$(jqf /tmp/leases.json '.[0].vf_pci')" "$vf_pci"
vf_info "$nic" "$i"
expect_eq "vf $i mac (PF side) while vm1 runs" "$(vf address)" "$mac"
expect_eq "vf $i vlan (PF side) while vm1 runs" "$(vf vlan_list.0.vlan 0)" 100

note "vm xml: the VF as a managed hostdev with its PCI address, the vNIC as macvtap"
run vfpool vm xml vm1 >/tmp/vm1.xml || fail "vm xml vm1 failed (exit $_rc)"
cat /tmp/vm1.xml
# 0000:03:10.1 -> domain='0x0000' bus='0x03' slot='0x10' function='0x1'
want_addr=$(echo "$vf_pci" | sed "s/^\(....\):\(..\):\(..\)\.\(.\)$/domain='0x\1' bus='0x\2' slot='0x\3' function='0x\4'/")
# One line, no indentation between elements, attributes in single quotes.
tr -d '\n' </tmp/vm1.xml | sed -e 's/>[[:space:]]*</></g' -e "s/\"/'/g" >/tmp/vm1.one
grep -q "<interface type='hostdev' managed='yes'><mac address='$mac'/><source><address type='pci' $want_addr/></source><vlan><tag id='100'/></vlan><driver name='vfio'/></interface>" /tmp/vm1.one ||
    fail "vm xml does not pass VF $vf_pci ($want_addr) with MAC $mac and VLAN 100 as a managed hostdev"
echo "ok: vm xml passes VF $vf_pci ($want_addr), MAC $mac, VLAN 100"
grep -q "<interface type='direct'><mac address='$vmac'/><source dev='$nic.100' mode='bridge'/>" /tmp/vm1.one ||
    fail "vm xml does not put the vNIC ($vmac) as macvtap on $nic.100"
echo "ok: vm xml puts the vNIC on $nic.100 (macvtap, bridge)"

note "the libvirt hook, as libvirtd runs it: vm1's domain under another name is refused"
sed 's|<name>vm1</name>|<name>intruder</name>|' /tmp/vm1.xml >/tmp/intruder.xml
grep -q '<name>intruder</name>' /tmp/intruder.xml || fail "cannot rename vm1's domain XML"
echo "\$ env -i vfpool libvirt-hook qemu intruder prepare begin - </tmp/intruder.xml  (must exit 4)" >&2
ERR=$(env -i /usr/bin/vfpool libvirt-hook qemu intruder prepare begin - </tmp/intruder.xml 2>&1 >/dev/null)
_rc=$?
echo "$ERR"
expect_eq "hook exit status for a VF vm1 holds" "$_rc" 4
expect_err_names "intruder" "$vf_pci" "vm/vm1/nic0"
expect_eq "leases after the refused hook" "$(lease_count)" 1
expect_eq "VF $vf_pci driver after the refused hook" "$(driver_of "$vf_dir")" vfio-pci

note "every VF taken: vm2's start fails with exit 6, nothing leased"
must vfpool vm create vm2 --nic "l3=n1,sriov"
must vfpool lease acquire --pool "pf:$nic" --owner other
expect_eq "free_vfs with every VF taken" "$(free_vfs "$nic")" 0
must_fail vfpool vm start vm2
expect_eq "vm start vm2 exit status" "$_rc" 6
expect_err_names n1 "$nic"
expect_eq "leases after the failed start" "$(lease_count)" 2
expect_eq "vm2 state after the failed start" "$(vfpool vm show vm2 -o json | jq -r .state)" stopped
if vfpool lease list -o json | jq -e '.[] | select(.owner | startswith("vm/vm2/"))' >/dev/null; then
    fail "the failed start of vm2 left a lease"
fi
echo "ok: no lease of vm2"
must vfpool lease release other

note "vm stop: the VF back on igbvf with a netdev, VLAN 0, the MAC no longer pinned"
run vfpool vm stop vm1 -o json >/tmp/vm.json || fail "vm stop vm1 failed (exit $_rc)"
cat /tmp/vm.json
expect_eq "vm1 state" "$(jqf /tmp/vm.json .state)" stopped
expect_eq "nic0 vf after stop" "$(jqf /tmp/vm.json '.nics[0].vf')" null
expect_eq "leases after stop" "$(lease_count)" 0
expect_eq "VF $vf_pci driver after stop" "$(driver_of "$vf_dir")" igbvf
_i=0
until ls "$vf_dir/net" >/dev/null 2>&1; do
    [ $_i -lt 50 ] || fail "VF $vf_pci on igbvf has no netdev 5 s after vm stop"
    sleep 0.1
    _i=$((_i + 1))
done
echo "ok: VF $vf_pci has netdev $(ls "$vf_dir/net") again"
vf_info "$nic" "$i"
expect_eq "vf $i vlan (PF side) after stop" "$(vf vlan_list.0.vlan 0)" 0
[ "$(vf address)" != "$mac" ] || fail "vf $i: the PF still pins vm1's MAC $mac after vm stop"
echo "ok: vf $i no longer carries $mac"
expect_eq "free_vfs after stop" "$(free_vfs "$nic")" 2

# vm1's two NICs on L2 l2a reach each other. The guest cannot run vm1 itself, so its VF NIC is
# stood in for by a lease with what `vm start` asks for (its MAC, VLAN 100) but igbvf instead
# of vfio-pci, the VF netdev in netns nsvf; its vNIC by what libvirt's macvtap is made of, a
# bridge-mode macvlan on $nic.100 (the same source `vm xml` names) with its MAC, in netns
# nsvn (a macvtap hands what it receives to a tap queue, not to the guest's own stack).
note "vm1's VF NIC (as a lease) and its vNIC (macvlan on $nic.100) ping each other"
must ip netns add nsvf
must ip netns add nsvn
run vfpool lease acquire --pool "pf:$nic" --owner vfpeer --owner-kind container \
    --netns /run/netns/nsvf --mac "$mac" --vlan 100 -o json >/tmp/peer.json ||
    fail "lease acquire for the VF peer failed (exit $_rc)"
cat /tmp/peer.json
pnd=$(jqf /tmp/peer.json '.netdev // ""')
[ -n "$pnd" ] || fail "the VF peer's lease has no netdev"
must ip link set "$pnd" netns nsvf
must ip -n nsvf addr add 10.251.0.1/24 dev "$pnd"
must ip -n nsvf link set "$pnd" up
must ip link add link "$nic" name "$nic.100" type vlan id 100
must ip link set "$nic.100" up
must ip link add link "$nic.100" name vnic0 address "$vmac" type macvlan mode bridge
must ip link set vnic0 netns nsvn
must ip -n nsvn addr add 10.251.0.2/24 dev vnic0
must ip -n nsvn link set vnic0 up
_i=0
until ip -n nsvf link show "$pnd" | grep -q LOWER_UP; do
    [ $_i -lt 50 ] || fail "the VF peer's $pnd in nsvf has no carrier after 5 s"
    sleep 0.1
    _i=$((_i + 1))
done
echo "ok: $pnd in nsvf has carrier (after ${_i}00 ms)"
run ip netns exec nsvf ping -c 3 -w 10 10.251.0.2 ||
    fail "the VF (MAC $mac, VLAN 100) cannot reach the vNIC (macvlan on $nic.100, MAC $vmac)"
echo "ok: VF NIC and vNIC of L2 l2a reach each other"
must ip -n nsvf link set "$pnd" netns 1
must vfpool lease release vfpeer
must ip netns del nsvf
must ip netns del nsvn
must ip link del "$nic.100"

must vfpool vm delete vm1
must vfpool vm delete vm2
must vfpool l3 delete n1
must vfpool l2 delete l2a
must vfpool nic restore "$nic"
