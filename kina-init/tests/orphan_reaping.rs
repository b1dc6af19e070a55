//! Orphans re-parented to kina-init are reaped, while a supervised child's
//! exit status is left to its supervisor. The test process makes itself a
//! child subreaper, which is what PID 1 is implicitly; it is the only test in
//! this binary because reaping collects every child of the process.

// Integration test: helpers outside #[test] functions fail the test by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::{Duration, Instant};

use kina_init::children::{self, reap_orphans};

#[test]
fn orphans_are_reaped_and_supervised_children_are_left_to_their_owner() {
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    // A supervised child that has exited but whose owner has not looked yet.
    let mut owned = children::spawn(Command::new("/bin/sh").args(["-c", "exit 7"])).unwrap();
    let owned_pid = owned.id() as i32;
    // A shell that leaves an orphan behind: `sleep` becomes our child.
    let out =
        children::output(Command::new("/bin/sh").args(["-c", "sleep 0.2 & echo $!"])).unwrap();
    let orphan: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();

    // Let the owned child exit first so it sits in front of the orphan.
    std::thread::sleep(Duration::from_millis(50));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut reaped = Vec::new();
    while !reaped.contains(&orphan) {
        assert!(
            Instant::now() < deadline,
            "orphan {orphan} never reaped; got {reaped:?}"
        );
        reaped.extend(reap_orphans());
        // The owner collects its child, as the supervisor's poll does.
        let _ = owned.try_wait();
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        !reaped.contains(&owned_pid),
        "the supervised child's status was stolen"
    );
    assert_eq!(owned.wait().unwrap().code(), Some(7));
    children::release(owned_pid as u32);
    assert!(children::owned_pids().is_empty());
}
