//! Which child processes have an owner waiting for them.
//!
//! As PID 1, kina-init must reap every orphan the kernel re-parents to it,
//! but a blind `waitpid(-1)` would steal the exit status of a child that a
//! phase (`ethtool`, `modprobe`, `ctr`) or the supervisor is about to wait
//! for, and that owner would then fail with ECHILD. So every child kina-init
//! starts goes through [`spawn`], which records its pid under the same lock
//! the reaper holds while it looks: a pid is either owned before it can
//! exit, or it is an orphan.

use std::collections::BTreeSet;
use std::io;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};

use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};

/// The search path a Debian system gives root.
pub const NODE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

static OWNED: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

fn owned() -> MutexGuard<'static, BTreeSet<i32>> {
    // A panic elsewhere while holding the lock leaves the set intact.
    OWNED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts `cmd` as an owned child; the caller waits for it and then calls
/// [`release`].
pub fn spawn(cmd: &mut Command) -> io::Result<Child> {
    // The kernel starts init with only HOME and TERM; without a PATH no
    // tool would be found (and setting kina-init's own environment would
    // need unsafe code in edition 2024).
    if std::env::var_os("PATH").is_none() {
        cmd.env("PATH", NODE_PATH);
    }
    let mut set = owned();
    let child = cmd.spawn()?;
    set.insert(child.id() as i32);
    Ok(child)
}

/// Forgets an owned child once its owner has collected it.
pub fn release(pid: u32) {
    owned().remove(&(pid as i32));
}

/// `Command::output` for an owned child.
pub fn output(cmd: &mut Command) -> io::Result<Output> {
    let child = spawn(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )?;
    let pid = child.id();
    let result = child.wait_with_output();
    release(pid);
    result
}

/// `output` with `input` written to the child's stdin (CNI plugins read
/// their configuration there).
pub fn output_with_input(cmd: &mut Command, input: &[u8]) -> io::Result<Output> {
    use std::io::Write;
    let mut child = spawn(
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )?;
    let pid = child.id();
    // Configurations are a few KiB, far below a pipe's buffer, so writing
    // before reading cannot deadlock.
    let written = child.stdin.take().map(|mut s| s.write_all(input));
    let result = child.wait_with_output();
    release(pid);
    if let Some(Err(e)) = written
        && e.kind() != io::ErrorKind::BrokenPipe
    {
        return Err(e);
    }
    result
}

/// Reaps every exited child nobody owns; returns the reaped pids. An owned
/// child's status is only peeked at (WNOWAIT) and left for its owner; the
/// children behind it wait for the next round, which the owner's wait makes
/// possible.
pub fn reap_orphans() -> Vec<i32> {
    let set = owned();
    let mut reaped = Vec::new();
    loop {
        let peek = waitid(
            Id::All,
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
        );
        let pid = match peek {
            Ok(WaitStatus::StillAlive) | Err(_) => break,
            Ok(status) => match status.pid() {
                Some(pid) => pid,
                None => break,
            },
        };
        if set.contains(&pid.as_raw()) {
            break;
        }
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(_) => reaped.push(pid.as_raw()),
            Err(_) => break,
        }
    }
    reaped
}

/// Pids of owned children still running or not yet collected.
pub fn owned_pids() -> BTreeSet<i32> {
    owned().clone()
}
