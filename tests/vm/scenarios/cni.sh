# vfpool-cni on real igb VFs, driven as a container runtime drives it (CNI 1.1: env, config
# on stdin, result or error JSON on stdout): ADD with MAC, VLAN and host-local addresses into
# two pods, the VFs there under the ifname and in IFLA_VFINFO_LIST, a ping between the pods
# through the NIC, the service path (a veth to the host's namespace, the service CIDR routed
# through it, a ping to a service address on the host answered), CHECK that passes and then
# names a deleted address, STATUS on an exhausted pool (code 50), DEL after the pod's netns
# was deleted (the VF came back under a kernel-chosen name; DEL names it back and restores
# it), GC with valid attachments. Addresses are inside this guest's own namespaces only.
. /vmtest/lib.sh

use_first_pf
split_into_pool 2 net
IPAM_DIR=/tmp/cni-ipam
SERVICE_IP=10.96.0.10

# The network config of pod $1 (a or b or c) in /tmp/conf-$1.json: pool `net`, its own MAC
# 02:00:00:00:01:0$2, VLAN 100, host-local addresses in 10.250.0.0/24; pod a also asks for
# the service path.
pod_config() { # pod macdigit [extra json]
    cat >/tmp/conf-$1.json <<EOF
{"cniVersion":"1.1.0","name":"sriov-net","type":"vfpool-cni","pool":"net",
 "mac":"02:00:00:00:01:0$2","vlan":100,
 "ipam":{"type":"host-local","ranges":[[{"subnet":"10.250.0.0/24"}]],"dataDir":"$IPAM_DIR"}
 ${3:+,$3}}
EOF
}
pod_config a a '"serviceRoute":{"cidr":"10.96.0.0/12"}'
pod_config b b
pod_config c c

# ADD of pod $1 (container ctr-$1, netns /run/netns/pod-$1, ifname net1): checks the result
# and the VF netdev in the namespace, and sets vfi_$1 (VF index), addr_$1 (its address with
# prefix) and host_$1 (the VF netdev's name in the host before the ADD).
add_pod() { # pod
    p=$1
    must ip netns add "pod-$p"
    cni_must ADD "ctr-$p" "/run/netns/pod-$p" net1 /tmp/conf-$p.json
    cp /tmp/cni.out /tmp/result-$p.json
    json_flat /tmp/result-$p.json /tmp/result-$p.flat
    mac=$(jq -r .mac /tmp/conf-$p.json)
    expect_eq "pod $p result cniVersion" "$(jget /tmp/result-$p.flat cniVersion)" 1.1.0
    # The VF netdev is the interface with the sandbox; its MAC the one asked.
    i=$(jq -r '[.interfaces[] | .sandbox != null] | index(true)' /tmp/result-$p.json)
    [ "$i" != null ] || fail "pod $p: the ADD result lists no interface in a sandbox"
    expect_eq "pod $p result interface name" "$(jget /tmp/result-$p.flat "interfaces.$i.name")" net1
    expect_eq "pod $p result interface mac" "$(jget /tmp/result-$p.flat "interfaces.$i.mac")" "$mac"
    expect_eq "pod $p result interface sandbox" "$(jget /tmp/result-$p.flat "interfaces.$i.sandbox")" "/run/netns/pod-$p"
    addr=$(jq -r '.ips[0].address // empty' /tmp/result-$p.json)
    case $addr in 10.250.0.*/24) ;; *) fail "pod $p: result address '$addr' is not in 10.250.0.0/24 (host-local)" ;; esac
    expect_eq "pod $p result address interface" "$(jget /tmp/result-$p.flat ips.0.interface)" "$i"
    # The namespace sees it: name, MAC, address, up.
    ip -n "pod-$p" -j addr show dev net1 >/tmp/ns-$p.json ||
        fail "pod $p: no net1 in netns pod-$p"
    cat /tmp/ns-$p.json
    expect_eq "pod $p net1 MAC in the netns" "$(jq -r '.[0].address' /tmp/ns-$p.json)" "$mac"
    expect_eq "pod $p net1 address in the netns" \
        "$(jq -r '[.[0].addr_info[] | select(.family == "inet") | "\(.local)/\(.prefixlen)"] | join(" ")' /tmp/ns-$p.json)" "$addr"
    jq -e '.[0].flags | index("UP")' /tmp/ns-$p.json >/dev/null || fail "pod $p: net1 is not up"
    # The lease says which VF.
    vfpool lease list -o json >/tmp/leases.json
    vi=$(jq -r --arg ns "/run/netns/pod-$p" '[.[] | select(.netns == $ns)] | if length == 1 then .[0].vf_index else "none or \(length)" end' /tmp/leases.json)
    case $vi in [0-9]*) ;; *) fail "pod $p: leases with netns /run/netns/pod-$p: $vi, want 1" ;; esac
    host=$(jq -r --arg ns "/run/netns/pod-$p" '.[] | select(.netns == $ns) | .netdev' /tmp/leases.json)
    # PF side: the VF carries the MAC and the port VLAN.
    vf_info "$nic" "$vi"
    expect_eq "pod $p VF $vi MAC (PF side)" "$(vf address)" "$mac"
    expect_eq "pod $p VF $vi VLAN (PF side)" "$(vf vlan_list.0.vlan)" 100
    eval "vfi_$p=$vi addr_$p=$addr host_$p=$host"
    # The VF's carrier in the namespace (the emulated NIC takes a moment).
    _i=0
    until ip -n "pod-$p" link show net1 | grep -q LOWER_UP; do
        [ $_i -lt 50 ] || fail "pod $p: net1 has no carrier after 5 s"
        sleep 0.1
        _i=$((_i + 1))
    done
    echo "ok: pod $p net1 has carrier (after ${_i}00 ms)"
}

# The lease of pod $1 must be gone, and its VF back in the host under its host name $2.
expect_given_back() { # pod vf-index host-name what
    vfpool lease list -o json >/tmp/leases.json
    expect_eq "$4: leases of pod $1" \
        "$(jq --arg ns "/run/netns/pod-$1" '[.[] | select(.netns == $ns)] | length' /tmp/leases.json)" 0
    expect_eq "$4: VF $2's netdev in the host" "$(ls "$dir/virtfn$2/net" 2>/dev/null)" "$3"
    vf_info "$nic" "$2"
    expect_eq "$4: VF $2 VLAN (PF side)" "$(vf vlan_list.0.vlan 0)" 0
    case $(vf address) in 02:00:00:00:01:*) fail "$4: VF $2 kept the pod's MAC $(vf address)" ;; esac
    echo "ok: $4: VF $2 MAC $(vf address), VLAN 0"
    # The VF owns its MAC again: igb refuses an untrusted VF's own MAC change (EADDRNOTAVAIL)
    # while the PF holds an administrative MAC for it, so the netdev in the host must be able
    # to take another MAC, which the PF then reports, and its old one back.
    _old=$(cat "/sys/class/net/$3/address")
    run ip link set "$3" address "02:00:00:00:0f:0$2" ||
        fail "$4: $3 (VF $2) cannot set its own MAC (the PF still pins one?): exit $_rc"
    vf_info "$nic" "$2"
    expect_eq "$4: VF $2 MAC (PF side) after $3 set its own" "$(vf address)" "02:00:00:00:0f:0$2"
    must ip link set "$3" address "$_old"
}

note "ADD pod a (with the service path) and pod b"
add_pod a
add_pod b
expect_eq "leases" "$(lease_count)" 2
[ "$vfi_a" != "$vfi_b" ] || fail "pods a and b got the same VF $vfi_a"
ip -d link show "$nic"

note "pod a pings pod b through the NIC (both on port VLAN 100)"
must ip netns exec pod-a ping -c 3 -w 10 "${addr_b%/*}"

note "the service path of pod a"
ip -j link show type veth >/tmp/veths.json
cat /tmp/veths.json
expect_eq "veths in the host namespace" "$(jq length /tmp/veths.json)" 1
host_end=$(jq -r '.[0].ifname' /tmp/veths.json)
expect_eq "host end $host_end addresses" \
    "$(ip -j addr show dev "$host_end" | jq -r '[.[0].addr_info[] | select(.family == "inet") | "\(.local)/\(.prefixlen)"] | join(" ")')" 169.254.1.1/32
expect_eq "host route back to pod a" "$(ip -j route show "${addr_a%/*}" | jq -r '.[0].dev')" "$host_end"
ip -n pod-a -j route show 10.96.0.0/12 >/tmp/svc-route.json
cat /tmp/svc-route.json
pod_end=$(jq -r '.[0].dev // empty' /tmp/svc-route.json)
[ -n "$pod_end" ] || fail "pod a has no route to 10.96.0.0/12"
expect_eq "pod a's 10.96.0.0/12 gateway" "$(jq -r '.[0].gateway' /tmp/svc-route.json)" 169.254.1.1
expect_eq "kind of pod a's $pod_end" "$(ip -n pod-a -d -j link show "$pod_end" | jq -r '.[0].linkinfo.info_kind')" veth
expect_eq "pod b routes to 10.96.0.0/12" "$(ip -n pod-b -j route show 10.96.0.0/12 | jq length)" 0
must ip addr add "$SERVICE_IP/32" dev lo
must ip netns exec pod-a ping -c 2 -w 10 "$SERVICE_IP"

note "CHECK passes on both pods"
for p in a b; do
    jq --slurpfile r /tmp/result-$p.json '. + {prevResult: $r[0]}' /tmp/conf-$p.json >/tmp/check-$p.json
    cni_must CHECK "ctr-$p" "/run/netns/pod-$p" net1 /tmp/check-$p.json
done

note "STATUS while the pool's 2 VFs are leased: code 50"
cni_must_fail STATUS "" "" "" /tmp/conf-c.json
expect_cni_error 50 net

note "CHECK of pod a after its address was deleted names the address"
must ip -n pod-a addr del "$addr_a" dev net1
cni_must_fail CHECK ctr-a /run/netns/pod-a net1 /tmp/check-a.json
expect_cni_error "" "${addr_a%/*}"

note "DEL of pod a after its netns was deleted; a host net1 makes the kernel rename the VF"
must ip link add net1 type veth peer name net1-peer
must ip netns del pod-a
_i=0
until [ -n "$(ls "$dir/virtfn$vfi_a/net" 2>/dev/null)" ]; do
    [ $_i -lt 100 ] || fail "VF $vfi_a's netdev did not come back to the host within 10 s of the netns deletion"
    sleep 0.1
    _i=$((_i + 1))
done
back=$(ls "$dir/virtfn$vfi_a/net")
echo "VF $vfi_a came back as $back after ${_i}00 ms"
[ "$back" != net1 ] || fail "the VF came back as net1 although the host has a net1"
cni_must DEL ctr-a /run/netns/pod-a net1 /tmp/conf-a.json
expect_given_back a "$vfi_a" "$host_a" "after DEL of pod a"
expect_eq "veths left in the host namespace (the service path's host end is gone)" \
    "$(ip -j link show type veth | jq -r '[.[].ifname] | sort | join(" ")')" "net1 net1-peer"
must ip link del net1
expect_eq "leases after DEL of pod a" "$(lease_count)" 1
note "DEL again is a success that changes nothing"
cni_must DEL ctr-a /run/netns/pod-a net1 /tmp/conf-a.json
expect_eq "leases after the second DEL" "$(lease_count)" 1

note "STATUS with a free VF"
cni_must STATUS "" "" "" /tmp/conf-c.json

note "GC: pod c is not among the valid attachments, pod b is"
add_pod c
jq '. + {"cni.dev/valid-attachments": [{"containerID": "ctr-b", "ifname": "net1"}]}' \
    /tmp/conf-c.json >/tmp/gc.json
cni_must GC "" "" "" /tmp/gc.json
expect_given_back c "$vfi_c" "$host_c" "after GC"
vfpool lease list -o json >/tmp/leases.json
expect_eq "leases after GC" "$(jq -r '[.[].netns] | join(" ")' /tmp/leases.json)" /run/netns/pod-b
expect_eq "pod c's netns after GC" "$(ip -n pod-c -j link show | jq -r '[.[].ifname] | join(" ")')" lo

note "DEL of pod b, netns still there"
cni_must DEL ctr-b /run/netns/pod-b net1 /tmp/conf-b.json
expect_given_back b "$vfi_b" "$host_b" "after DEL of pod b"
for p in b c; do must ip netns del "pod-$p"; done
expect_eq "leases" "$(lease_count)" 0
expect_vfs_as "$nic" /tmp/vfs-before "after every DEL"
must ip addr del "$SERVICE_IP/32" dev lo
must vfpool pool delete net
must vfpool nic restore "$nic"
