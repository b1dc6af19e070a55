//! Service supervision with real processes: restart with backoff into a
//! per-service log, and ordered, bounded shutdown.

// Integration test: helpers outside #[test] functions fail the test by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use kina_init::supervise::{Backoff, ServiceEvent, ServiceSpec, Supervisor};

fn sh(name: &str, dir: &Path, script: &str) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        program: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        log: dir.join("log").join(format!("{name}.log")),
    }
}

fn fast() -> Backoff {
    Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(160),
        reset_after: Duration::from_secs(60),
    }
}

/// Polls until `done` or a generous deadline (a hang is a failure, not a figure).
fn poll_until(
    sup: &mut Supervisor,
    events: &mut Vec<ServiceEvent>,
    done: impl Fn(&Supervisor) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(sup) {
        assert!(
            Instant::now() < deadline,
            "timed out; events so far: {events:?}"
        );
        events.extend(sup.poll(Instant::now()));
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_crashing_service_is_restarted_with_growing_delays_and_logs_every_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut sup = Supervisor::new(fast());
    sup.add(sh("containerd", dir.path(), "echo started; exit 3"));
    let mut events = Vec::new();
    poll_until(&mut sup, &mut events, |s| {
        s.restarts("containerd") >= Some(4)
    });
    let delays: Vec<Duration> = events
        .iter()
        .filter_map(|e| match e {
            ServiceEvent::Exited {
                restart_in, status, ..
            } => {
                assert!(status.contains('3'), "{status}");
                Some(*restart_in)
            }
            _ => None,
        })
        .collect();
    assert!(delays.len() >= 4, "{events:?}");
    assert!(
        delays.windows(2).all(|w| w[1] >= w[0]),
        "delays must not shrink in a crash loop: {delays:?}"
    );
    assert_eq!(delays[..4], [20, 40, 80, 160].map(Duration::from_millis));
    let log = std::fs::read_to_string(dir.path().join("log/containerd.log")).unwrap();
    assert!(log.matches("started").count() >= 5, "{log}");
    sup.stop_all(Duration::from_millis(500));
}

#[test]
fn services_stop_in_reverse_order_and_a_stubborn_one_is_killed_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let order = dir.path().join("order");
    let polite = |name: &str| {
        format!(
            "trap 'echo {name} >> {o}; exit 0' TERM; echo up > {d}/{name}.up; while :; do sleep 0.02; done",
            o = order.display(),
            d = dir.path().display()
        )
    };
    let mut sup = Supervisor::new(fast());
    sup.add(sh("containerd", dir.path(), &polite("containerd")));
    sup.add(sh("kubelet", dir.path(), &polite("kubelet")));
    sup.add(sh(
        "stubborn",
        dir.path(),
        &format!(
            "trap '' TERM; echo up > {}/stubborn.up; while :; do sleep 0.02; done",
            dir.path().display()
        ),
    ));
    let mut events = Vec::new();
    let up = |n: &str| dir.path().join(format!("{n}.up"));
    poll_until(&mut sup, &mut events, |_| {
        ["containerd", "kubelet", "stubborn"]
            .iter()
            .all(|n| up(n).exists())
    });
    let ended = sup.stop_all(Duration::from_millis(300));
    let names: Vec<&str> = ended.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["stubborn", "kubelet", "containerd"]);
    assert!(ended[0].1.starts_with("killed after 300 ms"), "{ended:?}");
    assert!(ended[1].1.starts_with("stopped"), "{ended:?}");
    assert_eq!(
        std::fs::read_to_string(&order).unwrap(),
        "kubelet\ncontainerd\n"
    );
    assert!(!sup.is_running());
    assert!(kina_init::children::owned_pids().is_empty());
}

#[test]
fn a_service_runs_as_soon_as_it_is_added_and_its_start_is_reported_by_the_next_poll() {
    let dir = tempfile::tempdir().unwrap();
    let mut sup = Supervisor::new(fast());
    sup.add(sh("containerd", dir.path(), "exec sleep 30"));
    // Running before any poll: PID 1 polls only every 250 ms, and the boot
    // waits on what it just added.
    assert!(sup.is_running());
    let events = sup.poll(Instant::now());
    assert!(
        matches!(events.as_slice(), [ServiceEvent::Started { name, .. }] if name == "containerd"),
        "{events:?}"
    );
    assert!(sup.poll(Instant::now()).is_empty(), "reported once");
    let ended = sup.stop_all(Duration::from_secs(5));
    assert!(ended[0].1.starts_with("stopped"), "{ended:?}");
}
