#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The console's pages: rendered from the engine with every value escaped, the VF map's
//! cells, and the login rules.

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use vfpool_daemon::auth::Auth;
use vfpool_engine::{AcquireRequest, OwnerKind, Policy, PoolSelector, SplitRequest};

const EVIL: &str = "<script>alert(1)</script>\"'&";

/// Splits `nic` into `vfs` VFs and makes a pool `p0` over them, beside the daemon (another
/// engine on the same state, as the CLI would).
fn split_and_pool(d: &support::Daemon, nic: &str, vfs: u32) {
    let host = d.other_host();
    let mut e = host.engine().unwrap();
    e.split_nics(
        &SplitRequest {
            nics: vec![nic.into()],
            vfs: vfs.to_string(),
            autoprobe: None,
            timeout: Duration::from_secs(5),
            force: false,
            keep_link: false,
        },
        &|_, _, _| {},
    )
    .unwrap();
    e.pool_create(
        "p0",
        vec![
            format!("{nic}#0-{}", vfs - 1)
                .parse::<PoolSelector>()
                .unwrap(),
        ],
        Policy::FirstFit,
    )
    .unwrap();
}

fn acquire(d: &support::Daemon, owner: &str, kind: OwnerKind) {
    let host = d.other_host();
    let mut e = host.engine().unwrap();
    let mut req = AcquireRequest::new("p0", owner);
    req.owner_kind = kind;
    e.acquire(&req).unwrap();
}

#[tokio::test]
async fn every_page_renders() {
    let d = support::daemon();
    for path in ["/hosts", "/nics", "/pools", "/leases", "/networks", "/vms"] {
        let a = d.get(path).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.text);
        assert!(
            a.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{path}"
        );
        assert!(a.text.starts_with("<!DOCTYPE html>"), "{path}");
        assert!(a.text.contains("/static/console.js"), "{path}");
    }
    // Each page says the change counter it was read at: the script re-reads on another.
    assert!(
        d.get("/nics")
            .await
            .text
            .contains(r#"<body data-generation="0">"#)
    );
    d.state.changed();
    d.state.changed();
    assert!(
        d.get("/vms")
            .await
            .text
            .contains(r#"<body data-generation="2">"#)
    );
    let a = d.get("/").await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.headers[header::LOCATION], "/nics");
}

#[tokio::test]
async fn the_nic_table_has_the_seeds_columns_and_states() {
    let d = support::daemon();
    split_and_pool(&d, "eno49", 4);
    acquire(&d, "someone", OwnerKind::Manual);
    let a = d.get("/nics").await;
    for col in [
        "Name",
        "Model",
        "Ready status",
        "Speed (Mbit/s)",
        "Virtualization state",
        "VF available / total",
    ] {
        assert!(a.text.contains(col), "{col}");
    }
    // eno49 split into 4 with one leased: 3 / 4; a NIC without SR-IOV is unvirtualizable.
    assert!(a.text.contains("3 / 4"), "{}", a.text);
    assert!(a.text.contains(">virtualized<"));
    assert!(a.text.contains(">virtualizable<"));
    assert!(a.text.contains(">unvirtualizable<"));
    // The split form posts to the API's split route, the restore button names its NIC.
    assert!(a.text.contains(r#"data-api="/api/v1/nics/eno49/split""#));
    assert!(a.text.contains(r#"data-restore="eno49""#));
}

#[tokio::test]
async fn the_vf_map_colours_and_letters_each_vf_with_owner_mac_and_vlan() {
    let d = support::daemon();
    split_and_pool(&d, "eno49", 4);
    acquire(&d, "vm/vm1/nic0", OwnerKind::Vm);
    let host = d.other_host();
    let mut e = host.engine().unwrap();
    let mut req = AcquireRequest::new("p0", "cni/net/abc/eth1");
    req.owner_kind = OwnerKind::Container;
    req.settings.vlan = Some(100);
    req.settings.mac = Some("02:00:00:00:00:42".parse().unwrap());
    e.acquire(&req).unwrap();

    let a = d.get("/nics/eno49").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let cells: Vec<&str> = a.text.split("<li class=\"cell ").skip(1).collect();
    assert_eq!(cells.len(), 4, "{}", a.text);
    assert!(cells[0].starts_with("vm\""), "{}", cells[0]);
    assert!(cells[0].contains("owner vm/vm1/nic0"), "{}", cells[0]);
    assert!(cells[0].contains(">V<"), "the letter, not only the colour");
    assert!(cells[1].starts_with("pod\""), "{}", cells[1]);
    assert!(cells[1].contains("VLAN 100") && cells[1].contains("MAC 02:00:00:00:00:42"));
    assert!(cells[1].contains(">P<"));
    assert!(cells[2].starts_with("free\"") && cells[2].contains(">F<"));
    assert!(a.text.contains("class=\"legend\""));

    // The fragment is the map alone, for the live update.
    let f = d.get("/nics/eno49/map").await;
    assert_eq!(f.status, StatusCode::OK);
    assert!(f.text.starts_with("<section id=\"vfmap\""), "{}", f.text);
    assert!(!f.text.contains("<html"));
    // Errors: unknown NIC a 404 page; a VF is not a map.
    let a = d.get("/nics/nope").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(a.text.contains("not-found"), "{}", a.text);
    assert_eq!(
        d.get("/nics/nope/map").await.json["error"]["kind"],
        "not-found"
    );
    let vf = cells[0]
        .split("(")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap()
        .to_owned();
    let a = d.get(&format!("/nics/{vf}/map")).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{vf}: {}", a.text);
    assert_eq!(a.json["error"]["field"], "nic");
}

#[tokio::test]
async fn an_unhealthy_vf_says_why() {
    let d = support::daemon();
    split_and_pool(&d, "eno49", 2);
    // The PF is set down on the simulated host: every VF becomes unhealthy.
    let host = d.other_host();
    let net = host.netops().unwrap();
    net.set_up("eno49", false).unwrap();
    let a = d.get("/nics/eno49/map").await;
    let cells: Vec<&str> = a.text.split("<li class=\"cell ").skip(1).collect();
    assert_eq!(cells.len(), 2, "{}", a.text);
    assert!(cells[0].starts_with("unhealthy\""), "{}", cells[0]);
    assert!(cells[0].contains("unhealthy: PF eno49"), "{}", cells[0]);
    assert!(cells[0].contains(">U<"));
}

#[tokio::test]
async fn values_are_escaped_on_every_page_that_shows_them() {
    let d = support::daemon();
    split_and_pool(&d, "eno49", 2);
    acquire(&d, EVIL, OwnerKind::Manual);
    for path in ["/leases", "/nics/eno49"] {
        let a = d.get(path).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        assert!(!a.text.contains("<script>alert"), "{path}: {}", a.text);
        assert!(
            a.text
                .contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;"),
            "{path}"
        );
    }
    // The release button's URL has the owner percent-encoded.
    let a = d.get("/leases").await;
    assert!(
        a.text
            .contains("/api/v1/leases/%3Cscript%3Ealert%281%29%3C%2Fscript%3E%22%27%26"),
        "{}",
        a.text
    );
}

#[tokio::test]
async fn the_static_files_are_served_from_the_binary() {
    let d = support::daemon();
    let a = d.get("/static/console.js").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        a.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(a.text.contains("EventSource(\"/api/v1/events\")"));
    let a = d.get("/static/console.css").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(d.get("/static/nope.js").await.status, StatusCode::NOT_FOUND);
}

// ---- login -----------------------------------------------------------------------------

const TOKEN: &str = "admin-token-0123456789";
const READ: &str = "read-token-0123456789";

fn form(path: &str, body: &str, extra: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("host", "127.0.0.1:7878")
        .header("origin", "http://127.0.0.1:7878");
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    b.body(Body::from(body.to_owned())).unwrap()
}

fn with_cookie(path: &str, cookie: &str) -> Request<Body> {
    Request::get(path)
        .header("cookie", cookie)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn with_a_token_pages_send_to_the_login_form_and_the_api_answers_401() {
    let d = support::daemon_with(Auth::with_tokens(Some(TOKEN), Some(READ)).unwrap());
    let a = d.get("/nics").await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.headers[header::LOCATION], "/login");
    let a = d.get("/api/v1/nics").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.json["error"]["kind"], "unauthorized");
    let a = d.get("/login").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        a.text
            .contains(r#"<input id="token" type="password" name="token""#)
    );
    // The login form's assets are public.
    assert_eq!(d.get("/static/console.css").await.status, StatusCode::OK);
}

#[tokio::test]
async fn login_sets_an_httponly_strict_cookie_that_opens_the_pages() {
    let d = support::daemon_with(Auth::with_tokens(Some(TOKEN), Some(READ)).unwrap());
    let a = d
        .call(form("/login", "token=wrong-token-0123456789", &[]))
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.headers.get(header::SET_COOKIE).is_none());
    assert!(a.text.contains("the token is not valid"), "{}", a.text);
    let a = d.call(form("/login", "", &[])).await;
    assert_eq!(
        a.status,
        StatusCode::UNAUTHORIZED,
        "no token field: {}",
        a.text
    );
    assert!(a.headers.get(header::SET_COOKIE).is_none());

    for t in [TOKEN, READ] {
        let a = d.call(form("/login", &format!("token={t}"), &[])).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.text);
        let c = a.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
        assert_eq!(
            c,
            format!("vfpool_token={t}; HttpOnly; SameSite=Strict; Path=/")
        );
        let a = d
            .call(with_cookie("/nics", &format!("vfpool_token={t}")))
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        assert!(a.text.contains("Log out"));
    }
    // A wrong cookie is no login.
    let a = d
        .call(with_cookie("/nics", "vfpool_token=wrong-token-0123456789"))
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn login_from_another_origin_is_refused() {
    let d = support::daemon_with(Auth::with_tokens(Some(TOKEN), None).unwrap());
    let a = d
        .call(
            Request::post("/login")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("host", "127.0.0.1:7878")
                .header("origin", "http://evil.example")
                .body(Body::from(format!("token={TOKEN}")))
                .unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.headers.get(header::SET_COOKIE).is_none());
}

#[tokio::test]
async fn logout_clears_the_cookie() {
    let d = support::daemon_with(Auth::with_tokens(Some(TOKEN), None).unwrap());
    let a = d
        .call(form(
            "/logout",
            "",
            &[("cookie", &format!("vfpool_token={TOKEN}"))],
        ))
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.headers[header::LOCATION], "/login");
    assert_eq!(
        a.headers[header::SET_COOKIE],
        "vfpool_token=; Max-Age=0; HttpOnly; SameSite=Strict; Path=/"
    );
}

#[tokio::test]
async fn without_a_token_there_is_no_login() {
    let d = support::daemon();
    let a = d.get("/login").await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.headers[header::LOCATION], "/");
    let a = d.get("/nics").await;
    assert!(!a.text.contains("Log out"));
}

// ---- hosts, networks, VMs --------------------------------------------------------------

#[tokio::test]
async fn the_hosts_page_shows_iommu_enabled_and_ready_and_each_remedy() {
    let d = support::daemon();
    let a = d.get("/hosts").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert!(
        a.text.contains("IOMMU enabled (next boot)</th><td>enabled"),
        "{}",
        a.text
    );
    assert!(
        a.text
            .contains("IOMMU ready (running kernel)</th><td class=\"ok\">ready")
    );
    assert!(
        !a.text.contains("<code>"),
        "no remedy while every check passes"
    );
    // The next boot's arguments lose intel_iommu=on: enabled says so, the check's remedy shows.
    let grub = d.dir.path().join("demo-host/root/etc/default/grub");
    let text = std::fs::read_to_string(&grub).unwrap();
    std::fs::write(&grub, text.replace("intel_iommu=on", "")).unwrap();
    let a = d.get("/hosts").await;
    assert!(
        a.text
            .contains("IOMMU enabled (next boot)</th><td>disabled"),
        "{}",
        a.text
    );
    assert!(
        a.text.contains("<td class=\"status-warn\">warn</td>"),
        "{}",
        a.text
    );
    assert!(
        a.text
            .contains("<code>keep it across reboots: vfpool host iommu enable</code>"),
        "{}",
        a.text
    );
    assert!(a.text.contains(r#"data-api="/api/v1/host/iommu""#));
}

#[tokio::test]
async fn the_sriov_box_is_greyed_out_where_the_l2_cannot_have_it() {
    let d = support::daemon();
    let a = d.get("/networks").await;
    // Each NIC of the L2 form says whether it can have SR-IOV; the first (eno1, the
    // onboard NIC) cannot, so the box starts greyed out.
    assert!(
        a.text
            .contains(r#"<option value="eno1" data-sriov="false">eno1 (unvirtualizable)</option>"#),
        "{}",
        a.text
    );
    assert!(
        a.text
            .contains(r#"<option value="eno49" data-sriov="true">"#)
    );
    assert!(
        a.text
            .contains(r#"<input id="l2-sriov" type="checkbox" name="sriov" disabled>"#),
        "{}",
        a.text
    );

    // An L2 on a NIC without SR-IOV: its "Enable SR-IOV" button is greyed out too.
    let host = d.other_host();
    let mut e = host.engine().unwrap();
    e.l2_create(&vfpool_engine::L2Request {
        name: "plain".into(),
        nic: "eno1".into(),
        l2_type: None,
        vlan: None,
        sriov: false,
    })
    .unwrap();
    e.l2_create(&vfpool_engine::L2Request {
        name: "fast".into(),
        nic: "eno49".into(),
        l2_type: None,
        vlan: Some(100),
        sriov: true,
    })
    .unwrap();
    let a = d.get("/networks").await;
    let row = |name: &str| {
        a.text
            .split("<tr>")
            .find(|r| r.starts_with(&format!("<td>{name}</td>")))
            .unwrap()
            .to_owned()
    };
    assert!(
        row("plain").contains("disabled title=\"its NIC is not SR-IOV capable\""),
        "{}",
        row("plain")
    );
    assert!(row("fast").contains("Disable SR-IOV") && !row("fast").contains(" disabled"));
    assert!(
        row("fast").contains("<td>vlan</td><td>100</td>"),
        "{}",
        row("fast")
    );
}

#[tokio::test]
async fn the_vm_page_shows_each_nics_type_and_the_switch() {
    let d = support::daemon();
    split_and_pool(&d, "eno50", 2);
    let host = d.other_host();
    let mut e = host.engine().unwrap();
    e.l2_create(&vfpool_engine::L2Request {
        name: "l2s".into(),
        nic: "eno49".into(),
        l2_type: None,
        vlan: None,
        sriov: true,
    })
    .unwrap();
    e.l3_create(&vfpool_engine::L3Request {
        name: "l3s".into(),
        l2: "l2s".into(),
        cidr: "192.168.90.0/24".into(),
        gateway: "192.168.90.1".into(),
        range: None,
        dns: None,
    })
    .unwrap();
    let nic = |sriov| vfpool_engine::VmNicSpec {
        l3: "l3s".into(),
        sriov,
        mac: None,
    };
    e.vm_create("vm1", &[nic(true), nic(false)]).unwrap();

    let a = d.get("/vms/vm1").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert!(a.text.contains("<td>nic0</td><td>VF</td>"), "{}", a.text);
    assert!(a.text.contains("<td>nic1</td><td>vNIC</td>"), "{}", a.text);
    assert!(a.text.contains(r#"data-api="/api/v1/vms/vm1/nics/0" data-method="PATCH" data-body="{&quot;type&quot;:&quot;vnic&quot;}""#), "{}", a.text);
    assert!(a.text.contains(r#"data-api="/api/v1/vms/vm1/start""#));
    assert!(
        a.text
            .contains(r#"<form id="nic-form" data-api="/api/v1/vms/vm1/nics" data-method="POST">"#)
    );
    assert!(
        a.text.contains(r#"<select id="add-nic-l3" name="l3""#),
        "{}",
        a.text
    );
    assert!(
        a.text
            .contains(r#"data-api="/api/v1/vms/vm1/nics/1" data-method="DELETE""#)
    );
    // The VM list and its create form: the L3 with SR-IOV leaves the box usable.
    let a = d.get("/vms").await;
    assert!(
        a.text.contains("nic0 VF on l3s, nic1 vNIC on l3s"),
        "{}",
        a.text
    );
    assert!(a.text.contains(r#"<option value="l3s" data-sriov="true">"#));
    assert!(
        !a.text
            .contains(r#"name="nics.0.type" data-on="vf" data-off="vnic" disabled"#)
    );
    assert_eq!(d.get("/vms/nope").await.status, StatusCode::NOT_FOUND);
}
