//! The exec channel end to end between kina-init's server and the host
//! client. A unix socket stands in for the virtio-serial port here (the
//! byte stream is the same; the VM tests exercise the real port).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kina_contract::exec::Request;
use kina_qemu::exec::{call, run};

fn serve(dir: &std::path::Path) -> (std::path::PathBuf, Arc<AtomicBool>) {
    let path = dir.join("exec.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let powered_off = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&powered_off);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let file = File::from(OwnedFd::from(conn.unwrap()));
            let flag = Arc::clone(&flag);
            // Ends with an error when the client hangs up; the next client
            // gets a fresh server, as reopening the port does in a node.
            let _ = kina_init::exec_server::serve_stream(file, &move || {
                flag.store(true, Ordering::SeqCst)
            });
        }
    });
    (path, powered_off)
}

#[test]
fn a_command_runs_with_its_output_streams_and_exit_code_kept_apart() {
    let dir = tempfile::tempdir().unwrap();
    let (sock, _) = serve(dir.path());
    let out = run(
        &sock,
        &["sh", "-c", "echo to-out; echo to-err >&2; exit 3"],
        &mut &b""[..],
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(out.stdout, b"to-out\n");
    assert_eq!(out.stderr, b"to-err\n");
    assert_eq!(out.exit.code, Some(3));
    assert!(!out.success());
}

#[test]
fn stdin_larger_than_a_frame_reaches_the_command_intact() {
    let dir = tempfile::tempdir().unwrap();
    let (sock, _) = serve(dir.path());
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let out = run(
        &sock,
        &["cat"],
        &mut data.as_slice(),
        Duration::from_secs(10),
    )
    .unwrap();
    assert!(out.success(), "{:?}", out.exit);
    assert_eq!(out.stdout, data);
}

#[test]
fn a_missing_program_is_reported_not_hung() {
    let dir = tempfile::tempdir().unwrap();
    let (sock, _) = serve(dir.path());
    let out = run(
        &sock,
        &["/no/such/program"],
        &mut &b""[..],
        Duration::from_secs(10),
    )
    .unwrap();
    let error = out.exit.error.unwrap();
    assert!(error.contains("/no/such/program"), "{error}");
    assert_eq!(out.exit.code, None);
}

#[test]
fn poweroff_is_answered_before_the_node_goes_down() {
    let dir = tempfile::tempdir().unwrap();
    let (sock, powered_off) = serve(dir.path());
    let exit = call(
        &sock,
        &Request::Poweroff,
        b"",
        Duration::from_secs(10),
        |_, _| {},
    )
    .unwrap();
    assert_eq!(exit.code, Some(0));
    std::thread::sleep(Duration::from_millis(100));
    assert!(powered_off.load(Ordering::SeqCst));
}

#[test]
fn a_node_that_never_answers_times_out_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("silent.sock");
    let _listener = UnixListener::bind(&path).unwrap();
    let err = run(&path, &["true"], &mut &b""[..], Duration::from_millis(300)).unwrap_err();
    assert!(err.to_string().contains("did not answer"), "{err}");
}
