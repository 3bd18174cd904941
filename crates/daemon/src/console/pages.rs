//! The pages, as maud templates: every value interpolated is escaped.
//!
//! Conventions the script follows (static/console.js):
//! - `form[data-api]` is sent as JSON to its URL with `data-method`; an input's `name` is
//!   its JSON field (`nics.0.l3` nests), `type=number` sends a number, a checkbox a bool
//!   (or `data-on` / `data-off` strings), `data-list` splits on commas, empty optional
//!   fields are left out. An error naming a field shows in the `.field-error` beside the
//!   input whose `name` or `data-field` matches; others in the form's `.form-error`.
//! - `button[data-api]` sends `data-body` (JSON) with `data-method`, after `data-confirm`.
//! - `button[data-restore]` asks the API which leases the restore detaches, names them in
//!   the confirmation, then restores.
//! - `[data-live]` regions (each with an id) are replaced from a fresh copy of the page
//!   (or the `data-live` URL when it is not empty) whenever `/api/v1/events` says
//!   something changed; `select[data-options]` get their options from it too.

use std::fmt::Write as _;

use maud::{DOCTYPE, Markup, html};
use vfpool_engine::view::NicView;
use vfpool_engine::{L2View, L3View, NicType, VmState, VmView};
use vfpool_host::check::Status;
use vfpool_model::NicState;

use super::data::{CellKind, Hosts, Leases, Networks, VfMap, Vms};
use crate::error::ErrorBody;

/// A path segment, percent-encoded (owners contain `/` and anything else).
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

const NAV: [(&str, &str); 6] = [
    ("/hosts", "Hosts"),
    ("/nics", "Physical NICs"),
    ("/pools", "Pools"),
    ("/leases", "Leases"),
    ("/networks", "L2 / L3 networks"),
    ("/vms", "VMs"),
];

/// What every page's frame needs: whether to offer logging out, and the change counter the
/// page was read at (the script re-reads it when an event names another).
#[derive(Debug, Clone, Copy)]
pub struct Cx {
    pub login: bool,
    pub generation: u64,
}

impl Cx {
    /// Read before the page's data: a change made while the page is read is then
    /// newer than the page says, and re-read.
    pub fn of(s: &crate::state::AppState) -> Self {
        Self {
            login: s.auth().required(),
            generation: *s.subscribe().borrow(),
        }
    }

    /// The login form's and error pages' frame.
    pub fn plain(login: bool) -> Self {
        Self {
            login,
            generation: 0,
        }
    }
}

fn layout(title: &str, active: &str, cx: Cx, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · vfpool" }
                link rel="stylesheet" href="/static/console.css";
                script src="/static/console.js" defer {}
            }
            body data-generation=(cx.generation) {
                header {
                    nav aria-label="Sections" {
                        span.brand { "vfpool" }
                        ul {
                            @for (href, label) in NAV {
                                li {
                                    @if href == active {
                                        a href=(href) aria-current="page" { (label) }
                                    } @else {
                                        a href=(href) { (label) }
                                    }
                                }
                            }
                        }
                        @if cx.login {
                            form method="post" action="/logout" {
                                button type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    p #status role="status" aria-live="polite" {}
                    (body)
                }
            }
        }
    }
}

fn warnings(w: &[String]) -> Markup {
    html! {
        @for w in w {
            p.warning role="note" { "warning: " (w) }
        }
    }
}

/// A form's general error line and its submit button.
fn submit(label: &str) -> Markup {
    html! {
        p.form-error role="alert" {}
        button type="submit" { (label) }
    }
}

fn field_error() -> Markup {
    html! { span.field-error aria-live="polite" {} }
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "-".to_owned(), ToString::to_string)
}

// ---- pages -----------------------------------------------------------------------------

pub fn error(e: &ErrorBody, login: bool) -> Markup {
    layout(
        "Error",
        "",
        Cx::plain(login),
        html! {
            p.error role="alert" { (e.kind) ": " (e.message) }
        },
    )
}

pub fn login(err: Option<&str>) -> Markup {
    layout(
        "Log in",
        "",
        Cx::plain(false),
        html! {
            form method="post" action="/login" {
                p { "This daemon needs a token (the first line of its --token-file)." }
                label for="token" { "Token" }
                input #token type="password" name="token" required autocomplete="current-password";
                @if let Some(e) = err {
                    span.field-error role="alert" { (e) }
                }
                button type="submit" { "Log in" }
            }
        },
    )
}

fn status_text(s: Status) -> &'static str {
    match s {
        Status::Pass => "pass",
        Status::Warn => "warn",
        Status::Fail => "fail",
    }
}

pub fn hosts(h: &Hosts, cx: Cx) -> Markup {
    let c = &h.check;
    layout(
        "Hosts",
        "/hosts",
        cx,
        html! {
            section #host data-live="" {
                h2 { "This host" }
                table {
                    tbody {
                        tr { th scope="row" { "IOMMU enabled (next boot)" }
                             td { (match c.iommu_enabled { Some(true) => "enabled", Some(false) => "disabled", None => "unknown" }) } }
                        tr { th scope="row" { "IOMMU ready (running kernel)" }
                             td.(if c.iommu_ready { "ok" } else { "bad" }) { (if c.iommu_ready { "ready" } else { "not ready" }) } }
                        @if c.reboot_pending {
                            tr { th scope="row" { "Reboot pending" }
                                 td.bad { "yes: enabled but not ready; reboot, or turn on VT-d / AMD-Vi in the BIOS" } }
                        }
                        tr { th scope="row" { "Ready for VMs" } td { (if c.vm_ready { "yes" } else { "no" }) } }
                        tr { th scope="row" { "Ready for containers" } td { (if c.container_ready { "yes" } else { "no" }) } }
                        tr { th scope="row" { "Boot loader" } td { (opt(&h.iommu.boot_loader)) } }
                    }
                }
                h2 { "Checks" }
                table.checks {
                    thead { tr { th scope="col" { "Check" } th scope="col" { "Status" } th scope="col" { "Detail" } th scope="col" { "Remedy" } } }
                    tbody {
                        @for item in &c.checks {
                            tr {
                                td { (item.name) }
                                td class=(format!("status-{}", status_text(item.status))) { (status_text(item.status)) }
                                td { (item.detail) }
                                td { @if let Some(r) = &item.remedy { code { (r) } } }
                            }
                        }
                    }
                }
            }
            h2 { "IOMMU setting" }
            form data-api="/api/v1/host/iommu" data-method="POST" {
                label {
                    input type="checkbox" name="enabled" checked[h.iommu.enabled];
                    " Enable the IOMMU at the next boot (takes effect after a reboot)"
                }
                (field_error())
                (submit("Save"))
            }
        },
    )
}

fn state_text(s: NicState) -> &'static str {
    match s {
        NicState::Virtualized => "virtualized",
        NicState::Virtualizable => "virtualizable",
        NicState::Unvirtualizable => "unvirtualizable",
        NicState::Vf => "vf",
    }
}

fn connected(n: &NicView) -> bool {
    n.operstate.as_deref() == Some("up")
}

pub fn nics(nics: &[NicView], warn: &[String], cx: Cx) -> Markup {
    layout(
        "Physical NICs",
        "/nics",
        cx,
        html! {
            (warnings(warn))
            section #nics data-live="" {
                table {
                    thead { tr {
                        th scope="col" { "Name" } th scope="col" { "Model" } th scope="col" { "Ready status" }
                        th scope="col" { "Speed (Mbit/s)" } th scope="col" { "Virtualization state" }
                        th scope="col" { "VF available / total" } th scope="col" { "Actions" }
                    } }
                    tbody {
                        @for n in nics {
                            tr data-nic=(n.name) {
                                td { a href={ "/nics/" (seg(&n.name)) } { (n.name) } }
                                td { (n.vendor) " " (n.model) }
                                td class=(if connected(n) { "ok" } else { "bad" }) {
                                    (if connected(n) { "● connected" } else { "○ not connected" })
                                }
                                td { (opt(&n.speed)) }
                                td class=(format!("state-{}", state_text(n.state))) { (state_text(n.state)) }
                                td {
                                    @if n.state == NicState::Virtualized {
                                        (n.free_vfs) " / " (n.num_vfs)
                                    } @else { "-" }
                                }
                                td.actions {
                                    @if n.state != NicState::Unvirtualizable && n.state != NicState::Vf {
                                        form.split data-api={ "/api/v1/nics/" (seg(&n.name)) "/split" } data-method="POST" data-busy="Splitting" {
                                            label for={ "vfs-" (n.name) } { "VFs" }
                                            input id={ "vfs-" (n.name) } type="number" name="vfs" min="1" max=(n.total_vfs) required value=(if n.num_vfs > 0 { n.num_vfs } else { n.total_vfs });
                                            (field_error())
                                            (submit("Split"))
                                            progress hidden aria-label={ "Splitting " (n.name) } {}
                                        }
                                        @if n.num_vfs > 0 {
                                            button type="button" data-restore=(n.name) { "Restore" }
                                        }
                                    }
                                    a href={ "/nics/" (seg(&n.name)) } { "VF map" }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

pub fn vf_map(m: &VfMap) -> Markup {
    html! {
        section #vfmap data-live={ "/nics/" (seg(&m.nic.name)) "/map" } {
            h2 { "VF map" }
            p.summary {
                (m.nic.free_vfs) " of " (m.nic.num_vfs) " VFs free"
                @for k in CellKind::ALL {
                    " · " (k.label()) ": " (m.cells.iter().filter(|c| c.kind == k).count())
                }
            }
            @if m.cells.is_empty() {
                p { "No VFs: split this NIC first." }
            } @else {
                ol.vfmap aria-label={ "VFs of " (m.nic.name) } {
                    @for c in &m.cells {
                        @let title = cell_title(c);
                        li class={ "cell " (c.kind.class()) } title=(title) data-vf=(c.index) data-kind=(c.kind.class()) aria-label=(title) {
                            span.letter aria-hidden="true" { (c.kind.letter()) }
                            span.index { (c.index) }
                        }
                    }
                }
            }
            (legend())
        }
    }
}

fn cell_title(c: &super::data::VfCell) -> String {
    let mut t = format!("VF {} ({})", c.index, c.pci);
    if let Some(n) = &c.netdev {
        let _ = write!(t, " {n}");
    }
    let _ = write!(t, ": {}", c.kind.label());
    if let Some(o) = &c.owner {
        let _ = write!(t, "; owner {o}");
    }
    if let Some(m) = &c.mac {
        let _ = write!(t, "; MAC {m}");
    }
    match c.vlan {
        Some(0) | None => t.push_str("; VLAN none"),
        Some(v) => {
            let _ = write!(t, "; VLAN {v}");
        }
    }
    if let Some(r) = &c.reason {
        let _ = write!(t, "; unhealthy: {r}");
    }
    t
}

fn legend() -> Markup {
    html! {
        dl.legend aria-label="Legend" {
            @for k in CellKind::ALL {
                div {
                    dt { span class={ "cell " (k.class()) } aria-hidden="true" { span.letter { (k.letter()) } } }
                    dd { (k.letter()) ": " (k.label()) }
                }
            }
        }
    }
}

pub fn nic_map(m: &VfMap, cx: Cx) -> Markup {
    let n = &m.nic;
    layout(
        &format!("NIC {}", n.name),
        "/nics",
        cx,
        html! {
            (warnings(&m.warnings))
            p {
                (n.vendor) " " (n.model) " · " (n.pci) " · " (state_text(n.state))
                " · " (n.num_vfs) " of " (n.total_vfs) " VFs enabled"
            }
            (vf_map(m))
        },
    )
}

pub fn pools(pools: &[vfpool_engine::PoolView], cx: Cx) -> Markup {
    layout(
        "Pools",
        "/pools",
        cx,
        html! {
            section #pools data-live="" {
                table {
                    thead { tr {
                        th scope="col" { "Name" } th scope="col" { "Policy" } th scope="col" { "Selectors" }
                        th scope="col" { "Total" } th scope="col" { "Free" } th scope="col" { "Leased" } th scope="col" { "Unhealthy" } th scope="col" { "Actions" }
                    } }
                    tbody {
                        @for p in pools {
                            tr {
                                td { (p.name) } td { (p.policy) } td { (p.selectors.join(" ")) }
                                td { (p.total) } td { (p.free) } td { (p.leased) }
                                td { (p.unhealthy)
                                    @for (r, n) in &p.unhealthy_reasons { br; small { (n) " × " (r) } } }
                                td { button type="button" data-api={ "/api/v1/pools/" (seg(&p.name)) } data-method="DELETE"
                                        data-confirm={ "Delete pool " (p.name) "?" } { "Delete" } }
                            }
                        }
                    }
                }
            }
            h2 { "Create a pool" }
            form data-api="/api/v1/pools" data-method="POST" {
                label for="pool-name" { "Name" }
                input #pool-name name="name" required;
                (field_error())
                label for="pool-select" { "Selectors (comma-separated: eno49#0-3, vendor=8086, pf=ens1f0)" }
                input #pool-select name="select" data-list required;
                (field_error())
                label for="pool-policy" { "Policy" }
                select #pool-policy name="policy" {
                    option value="first-fit" { "first-fit" }
                    option value="spread" { "spread" }
                    option value="pack" { "pack" }
                }
                (field_error())
                (submit("Create"))
            }
        },
    )
}

pub fn leases(l: &Leases, cx: Cx) -> Markup {
    layout(
        "Leases",
        "/leases",
        cx,
        html! {
            section #leases data-live="" {
                table {
                    thead { tr {
                        th scope="col" { "Owner" } th scope="col" { "Kind" } th scope="col" { "Pool" } th scope="col" { "VF" }
                        th scope="col" { "PF" } th scope="col" { "State" } th scope="col" { "MAC" } th scope="col" { "VLAN" } th scope="col" { "Actions" }
                    } }
                    tbody {
                        @for x in &l.leases {
                            tr {
                                td { (x.owner) }
                                td { (x.owner_kind.as_str()) }
                                td { (x.pool) }
                                td { (x.vf_pci) " (#" (x.vf_index) ")" }
                                td { (x.pf) }
                                td { (serde_json::to_value(x.state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()) }
                                td { (opt(&x.applied.settings.mac)) }
                                td { (opt(&x.applied.settings.vlan)) }
                                td { button type="button" data-api={ "/api/v1/leases/" (seg(&x.owner)) } data-method="DELETE"
                                        data-confirm={ "Release the lease of " (x.owner) "?" } { "Release" } }
                            }
                        }
                    }
                }
            }
            h2 { "Acquire a lease" }
            form data-api="/api/v1/leases" data-method="POST" {
                label for="lease-pool" { "Pool" }
                select #lease-pool name="pool" required data-options {
                    @for p in &l.pools { option value=(p) { (p) } }
                }
                (field_error())
                label for="lease-owner" { "Owner" }
                input #lease-owner name="owner" required;
                (field_error())
                label for="lease-kind" { "Owner kind" }
                select #lease-kind name="owner_kind" {
                    option value="manual" { "manual" }
                    option value="container" { "container" }
                    option value="vm" { "vm" }
                }
                (field_error())
                (submit("Acquire"))
            }
        },
    )
}

fn l2_sriov_capable(n: &NicView) -> bool {
    matches!(n.state, NicState::Virtualized | NicState::Virtualizable)
}

pub fn networks(n: &Networks, cx: Cx) -> Markup {
    let capable = |l2: &L2View| {
        n.nics.iter().any(|nic| {
            (nic.name == l2.nic || nic.pci.to_string() == l2.nic) && l2_sriov_capable(nic)
        })
    };
    layout(
        "L2 / L3 networks",
        "/networks",
        cx,
        html! {
            section #l2 data-live="" {
                h2 { "L2 networks" }
                table {
                    thead { tr {
                        th scope="col" { "Name" } th scope="col" { "NIC" } th scope="col" { "Type" } th scope="col" { "VLAN" }
                        th scope="col" { "SR-IOV" } th scope="col" { "L3 networks" } th scope="col" { "Actions" }
                    } }
                    tbody {
                        @for l in &n.l2 {
                            tr {
                                td { (l.name) } td { (l.nic) } td { (l.l2_type.as_str()) } td { (opt(&l.vlan)) }
                                td { (if l.sriov { "enabled" } else { "disabled" }) }
                                td { (l.l3.join(", ")) }
                                td.actions {
                                    button type="button" data-api={ "/api/v1/l2/" (seg(&l.name)) } data-method="PATCH"
                                        data-body=(serde_json::json!({"sriov": !l.sriov}).to_string())
                                        disabled[!l.sriov && !capable(l)]
                                        title=(if !l.sriov && !capable(l) { "its NIC is not SR-IOV capable" } else { "" }) {
                                        (if l.sriov { "Disable SR-IOV" } else { "Enable SR-IOV" })
                                    }
                                    button type="button" data-api={ "/api/v1/l2/" (seg(&l.name)) } data-method="DELETE"
                                        data-confirm={ "Delete L2 " (l.name) "?" } { "Delete" }
                                }
                            }
                        }
                    }
                }
            }
            h3 { "Create an L2 network" }
            form #l2-form data-api="/api/v1/l2" data-method="POST" {
                label for="l2-name" { "Name" }
                input #l2-name name="name" required;
                (field_error())
                label for="l2-nic" { "Physical NIC" }
                select #l2-nic name="nic" required data-sriov-gate="l2-sriov" data-options {
                    @for nic in n.nics.iter().filter(|x| x.state != NicState::Vf) {
                        option value=(nic.name) data-sriov=(l2_sriov_capable(nic)) {
                            (nic.name) " (" (state_text(nic.state)) ")"
                        }
                    }
                }
                (field_error())
                label for="l2-type" { "Type" }
                select #l2-type name="type" {
                    option value="" { "default (vlan with a VLAN id, else novlan)" }
                    option value="novlan" { "novlan" }
                    option value="vlan" { "vlan" }
                    option value="vxlan" { "vxlan" }
                }
                (field_error())
                label for="l2-vlan" { "VLAN id" }
                input #l2-vlan type="number" name="vlan" min="1" max="4094";
                (field_error())
                @let first_capable = n.nics.iter().find(|x| x.state != NicState::Vf).is_some_and(l2_sriov_capable);
                label {
                    input #l2-sriov type="checkbox" name="sriov" disabled[!first_capable];
                    " Enable SR-IOV"
                }
                span.hint #l2-sriov-hint { "Greyed out when the NIC is not SR-IOV capable." }
                (field_error())
                (submit("Create L2"))
            }
            section #l3 data-live="" {
                h2 { "L3 networks" }
                table {
                    thead { tr {
                        th scope="col" { "Name" } th scope="col" { "L2" } th scope="col" { "NIC" } th scope="col" { "SR-IOV" }
                        th scope="col" { "CIDR" } th scope="col" { "Gateway" } th scope="col" { "Range" } th scope="col" { "DNS" }
                        th scope="col" { "Allocated" } th scope="col" { "Actions" }
                    } }
                    tbody {
                        @for l in &n.l3 {
                            tr {
                                td { (l.name) } td { (l.l2) } td { (l.nic) }
                                td { (if l.sriov { "enabled" } else { "disabled" }) }
                                td { (l.cidr) } td { (l.gateway) } td { (l.range_first) " - " (l.range_last) }
                                td { (opt(&l.dns)) } td { (l.allocated) }
                                td { button type="button" data-api={ "/api/v1/l3/" (seg(&l.name)) } data-method="DELETE"
                                        data-confirm={ "Delete L3 " (l.name) "?" } { "Delete" } }
                            }
                        }
                    }
                }
            }
            h3 { "Create an L3 network" }
            form #l3-form data-api="/api/v1/l3" data-method="POST" {
                label for="l3-name" { "Name" }
                input #l3-name name="name" required;
                (field_error())
                label for="l3-l2" { "L2 network" }
                select #l3-l2 name="l2" required data-options {
                    @for l in &n.l2 { option value=(l.name) { (l.name) (if l.sriov { " (SR-IOV)" } else { "" }) } }
                }
                (field_error())
                label for="l3-cidr" { "CIDR" }
                input #l3-cidr name="cidr" required placeholder="192.168.90.0/24";
                (field_error())
                label for="l3-gateway" { "Gateway" }
                input #l3-gateway name="gateway" required placeholder="192.168.90.1";
                (field_error())
                label for="l3-range" { "Range (FIRST-LAST, optional)" }
                input #l3-range name="range";
                (field_error())
                label for="l3-dns" { "DNS (optional)" }
                input #l3-dns name="dns";
                (field_error())
                (submit("Create L3"))
            }
        },
    )
}

/// A VM NIC's type as the seed writes it.
fn nic_type(t: NicType) -> &'static str {
    match t {
        NicType::Vf => "VF",
        NicType::Vnic => "vNIC",
    }
}

fn vm_state(s: VmState) -> &'static str {
    s.as_str()
}

/// A VM NIC's L3 and its SR-IOV box (greyed out unless the chosen L3 has SR-IOV); `id`
/// prefixes the ids, `name` the JSON fields.
fn nic_fieldset(id: &str, name: &str, legend: Option<&str>, l3: &[L3View]) -> Markup {
    let first_sriov = l3.first().is_some_and(|l| l.sriov);
    html! {
        fieldset data-nic {
            @if let Some(l) = legend { legend { (l) } }
            label for={ (id) "-l3" } { "L3 network" }
            select id={ (id) "-l3" } name={ (name) "l3" } data-field="l3 nic" data-sriov-gate={ (id) "-sriov" } required data-options {
                @for l in l3 { option value=(l.name) data-sriov=(l.sriov) { (l.name) (if l.sriov { " (SR-IOV)" } else { "" }) } }
            }
            (field_error())
            label {
                input id={ (id) "-sriov" } type="checkbox" name={ (name) "type" } data-on="vf" data-off="vnic" disabled[!first_sriov];
                " Enable SR-IOV (a VF NIC)"
            }
            span.hint { "Greyed out when the L3's L2 network has no SR-IOV." }
            (field_error())
        }
    }
}

pub fn vms(v: &Vms, cx: Cx) -> Markup {
    layout(
        "VMs",
        "/vms",
        cx,
        html! {
            section #vms data-live="" {
                table {
                    thead { tr {
                        th scope="col" { "Name" } th scope="col" { "State" } th scope="col" { "NICs" } th scope="col" { "Actions" }
                    } }
                    tbody {
                        @for vm in &v.vms {
                            tr data-vm=(vm.name) {
                                td { a href={ "/vms/" (seg(&vm.name)) } { (vm.name) } }
                                td class={ "vm-" (vm_state(vm.state)) } { (vm_state(vm.state)) }
                                td { @for (i, n) in vm.nics.iter().enumerate() {
                                        @if i > 0 { ", " }
                                        (n.name) " " (nic_type(n.nic_type)) " on " (n.l3)
                                } }
                                td.actions {
                                    (vm_actions(vm))
                                    button type="button" data-api={ "/api/v1/vms/" (seg(&vm.name)) } data-method="DELETE"
                                        data-confirm={ "Delete VM " (vm.name) "?" } { "Delete" }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Create a VM" }
            form #vm-form data-api="/api/v1/vms" data-method="POST" {
                label for="vm-name" { "Name" }
                input #vm-name name="name" required;
                (field_error())
                (nic_fieldset("vm-nic0", "nics.0.", Some("NIC 0"), &v.l3))
                button type="button" data-add-nic { "Add another NIC" }
                (submit("Create VM"))
            }
        },
    )
}

fn vm_actions(vm: &VmView) -> Markup {
    let base = format!("/api/v1/vms/{}", seg(&vm.name));
    html! {
        @if vm.state == VmState::Stopped {
            button type="button" data-api={ (base) "/start" } data-method="POST" { "Start" }
        } @else {
            button type="button" data-api={ (base) "/stop" } data-method="POST" { "Stop" }
        }
    }
}

pub fn vm(vm: &VmView, l3: &[L3View], cx: Cx) -> Markup {
    let base = format!("/api/v1/vms/{}", seg(&vm.name));
    layout(
        &format!("VM {}", vm.name),
        "/vms",
        cx,
        html! {
            section #vm data-live="" {
                p { "State: " strong class={ "vm-" (vm_state(vm.state)) } { (vm_state(vm.state)) } " · UUID " (vm.uuid) " " (vm_actions(vm)) }
                h2 { "NICs" }
                table {
                    thead { tr {
                        th scope="col" { "Name" } th scope="col" { "NIC type" } th scope="col" { "L3" } th scope="col" { "L2" }
                        th scope="col" { "Physical NIC" } th scope="col" { "VLAN" } th scope="col" { "MAC" } th scope="col" { "IP" }
                        th scope="col" { "VF" } th scope="col" { "Switch" }
                    } }
                    tbody {
                        @for n in &vm.nics {
                            tr {
                                td { (n.name) }
                                td { (nic_type(n.nic_type)) }
                                td { (n.l3) } td { (n.l2) } td { (n.nic) } td { (opt(&n.vlan)) }
                                td { (n.mac) } td { (opt(&n.address)) }
                                td { (opt(&n.vf)) @if n.detached { " (detached)" } }
                                td {
                                    @let to = match n.nic_type { NicType::Vf => NicType::Vnic, NicType::Vnic => NicType::Vf };
                                    button type="button" data-api={ (base) "/nics/" (n.index) } data-method="PATCH"
                                        data-body=(serde_json::json!({"type": to.as_str()}).to_string())
                                        disabled[vm.state != VmState::Stopped]
                                        title=(if vm.state == VmState::Stopped { "" } else { "stop the VM first" }) {
                                        "Set type " (nic_type(to))
                                    }
                                    " "
                                    button type="button" data-api={ (base) "/nics/" (n.index) } data-method="DELETE"
                                        data-confirm={ "Remove " (n.name) " from " (vm.name) "?" } { "Remove" }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Add a NIC" }
            form #nic-form data-api={ (base) "/nics" } data-method="POST" {
                (nic_fieldset("add-nic", "", None, l3))
                (submit("Add NIC"))
            }
        },
    )
}
