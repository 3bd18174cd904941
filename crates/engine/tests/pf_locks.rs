//! Everything that touches a VF waits while its PF's VF count is being changed, and
//! nothing else does: acquire, release, gc and reapply hold the PF's lock shared, a split
//! holds it exclusively (crates/engine/src/lock.rs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::{Lab, req, sel};
use vfpool_engine::lock::{Hold, PfLocks};
use vfpool_engine::{Policy, ReleaseTarget};
use vfpool_model::PciAddr;

const EM1: PciAddr = PciAddr::new(0, 4, 0, 0);

/// Runs `f` on a thread while em1 is held exclusively (as a split holds it): `f` must not
/// finish until the lock is dropped, then must.
fn waits_for_a_split_of_em1(lab: &Lab, what: &str, f: impl FnOnce() + Send + 'static) {
    let held = PfLocks::take(&lab.state(), &[EM1].into(), Hold::Exclusive).unwrap();
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        f();
        tx.send(()).unwrap();
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "{what} did not wait for the split of its PF"
    );
    drop(held);
    rx.recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("{what} did not go on once the split was done"));
    t.join().unwrap();
}

#[test]
fn acquire_release_gc_and_reapply_wait_for_a_split_of_their_pf_only() {
    let lab = Lab::new();
    lab.split("em1", 4);
    lab.split("em2", 4);
    let mut e = lab.engine();
    e.pool_create("one", sel(&["em1"]), Policy::FirstFit)
        .unwrap();
    e.pool_create("two", sel(&["em2"]), Policy::FirstFit)
        .unwrap();
    e.acquire(&req("one", "kept")).unwrap();

    // Another NIC's pool does not wait.
    {
        let _split = PfLocks::take(&lab.state(), &[EM1].into(), Hold::Exclusive).unwrap();
        e.acquire(&req("two", "other")).unwrap();
        e.release(&ReleaseTarget::Owner("other".into())).unwrap();
    }

    let mut e1 = lab.engine();
    waits_for_a_split_of_em1(&lab, "acquire", move || {
        e1.acquire(&req("one", "a")).unwrap();
    });
    let mut e2 = lab.engine();
    waits_for_a_split_of_em1(&lab, "release", move || {
        e2.release(&ReleaseTarget::Owner("a".into())).unwrap();
    });
    let mut e3 = lab.engine();
    waits_for_a_split_of_em1(&lab, "gc", move || {
        e3.gc().unwrap();
    });
    let mut e4 = lab.engine();
    waits_for_a_split_of_em1(&lab, "reapply", move || {
        e4.reapply().unwrap();
    });
}

/// A split that brings a PF up waits for its link on a real host (settle > 0), as after
/// igb's reset, so that an acquire right after finds the VFs healthy (found by the
/// real-kernel tier's pf-down scenario).
#[test]
fn a_split_that_brings_the_pf_up_waits_for_its_link() {
    use vfpool_engine::SplitRequest;
    use vfpool_netlink::NetOps;
    let lab = Lab::new();
    lab.net.set_up("eno50", false).unwrap();
    let mut e = lab.engine().with_split_settle(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let out = e
        .split_nics(
            &SplitRequest {
                nics: vec!["eno50".into()],
                vfs: "2".into(),
                autoprobe: None,
                timeout: Duration::from_secs(60),
                force: false,
                keep_link: false,
            },
            &|_, _, _| {},
        )
        .unwrap();
    let c = &out.changed[0];
    assert!(c.link_brought_up);
    assert_eq!(c.link_settled, Some(true));
    assert!(started.elapsed() >= Duration::from_millis(300));
    e.pool_create("p", sel(&["eno50"]), Policy::FirstFit)
        .unwrap();
    e.acquire(&req("p", "right-after")).unwrap();
}
