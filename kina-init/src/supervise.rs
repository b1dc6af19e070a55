//! Supervision of the node's services (containerd now, kubelet later) and
//! reaping of every other process, as PID 1 must.
//!
//! Each service has its own log file and restarts with exponential backoff
//! (reset once it has stayed up a while), and stops in reverse start order:
//! SIGTERM, then SIGKILL after a bounded grace period. Orphans re-parented to
//! kina-init are reaped by `children::reap_orphans`, which leaves the exit
//! status of a supervised child to its runner: the split Talos's machined
//! makes between its reaper and its service runners.

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::children;

#[derive(Clone, Debug)]
pub struct ServiceSpec {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// stdout and stderr go here, appended across restarts.
    pub log: PathBuf,
}

/// Restart delays: `initial`, doubling up to `max`; a service that ran for
/// `reset_after` starts over at `initial`.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The delay before restart number `n` (1-based) of a crash loop.
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceEvent {
    Started {
        name: String,
        pid: u32,
    },
    Exited {
        name: String,
        status: String,
        restart_in: Duration,
    },
    StartFailed {
        name: String,
        error: String,
        restart_in: Duration,
    },
}

struct Service {
    spec: ServiceSpec,
    child: Option<Child>,
    started_at: Option<Instant>,
    /// Restarts in the current crash loop.
    crashes: u32,
    next_start: Option<Instant>,
    total_restarts: u32,
    /// The running process was asked to stop so that it starts again at
    /// once: its exit is not a crash.
    restart_requested: bool,
}

#[derive(Default)]
pub struct Supervisor {
    services: Vec<Service>,
    backoff: Backoff,
    /// Events of starts made outside `poll`, for the next `poll` to return.
    pending: Vec<ServiceEvent>,
}

impl Supervisor {
    pub fn new(backoff: Backoff) -> Self {
        Self {
            services: Vec::new(),
            backoff,
            pending: Vec::new(),
        }
    }

    /// Adds a service and starts it at once; its events come with the
    /// next `poll`. At once, not at PID 1's next tick: the boot waits on
    /// what was just added (containerd's socket, the kubelet), and the tick
    /// is 250 ms.
    pub fn add(&mut self, spec: ServiceSpec) {
        self.services.push(Service {
            spec,
            child: None,
            started_at: None,
            crashes: 0,
            next_start: Some(Instant::now()),
            total_restarts: 0,
            restart_requested: false,
        });
        let events = self.poll(Instant::now());
        self.pending.extend(events);
    }

    pub fn has(&self, name: &str) -> bool {
        self.services.iter().any(|s| s.spec.name == name)
    }

    /// Asks a running service to stop (SIGTERM) and starts it again at
    /// once, without counting a crash: for a program that must re-read
    /// files it only reads at start (the kubelet after `kubeadm init`
    /// rewrote its kubeconfig).
    pub fn restart(&mut self, name: &str) -> bool {
        let Some(s) = self.services.iter_mut().find(|s| s.spec.name == name) else {
            return false;
        };
        if let Some(child) = &s.child {
            s.restart_requested = true;
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        }
        true
    }

    /// Stops one service (SIGTERM, then SIGKILL after `grace`) and forgets
    /// it, so it is not restarted.
    pub fn remove(&mut self, name: &str, grace: Duration) -> Option<String> {
        let i = self.services.iter().position(|s| s.spec.name == name)?;
        let mut service = self.services.remove(i);
        Some(stop_child(&mut service, grace))
    }

    /// Whether any supervised process is running.
    pub fn is_running(&self) -> bool {
        self.services.iter().any(|s| s.child.is_some())
    }

    pub fn restarts(&self, name: &str) -> Option<u32> {
        self.services
            .iter()
            .find(|s| s.spec.name == name)
            .map(|s| s.total_restarts)
    }

    /// Notices exits, schedules restarts, starts what is due.
    pub fn poll(&mut self, now: Instant) -> Vec<ServiceEvent> {
        let backoff = self.backoff;
        let mut events = std::mem::take(&mut self.pending);
        for s in &mut self.services {
            if let Some(child) = &mut s.child
                && let Ok(Some(status)) = child.try_wait()
            {
                let ran = s
                    .started_at
                    .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
                if ran >= backoff.reset_after {
                    s.crashes = 0;
                }
                let delay = if std::mem::take(&mut s.restart_requested) {
                    Duration::ZERO
                } else {
                    s.crashes += 1;
                    backoff.delay(s.crashes)
                };
                children::release(child.id());
                s.child = None;
                s.next_start = Some(now + delay);
                events.push(ServiceEvent::Exited {
                    name: s.spec.name.clone(),
                    status: status.to_string(),
                    restart_in: delay,
                });
            }
            if s.child.is_none() && s.next_start.is_some_and(|t| t <= now) {
                match start(&s.spec) {
                    Ok(child) => {
                        if s.started_at.is_some() {
                            s.total_restarts += 1;
                        }
                        events.push(ServiceEvent::Started {
                            name: s.spec.name.clone(),
                            pid: child.id(),
                        });
                        s.child = Some(child);
                        s.started_at = Some(now);
                        s.next_start = None;
                    }
                    Err(error) => {
                        s.crashes += 1;
                        let delay = backoff.delay(s.crashes);
                        s.next_start = Some(now + delay);
                        events.push(ServiceEvent::StartFailed {
                            name: s.spec.name.clone(),
                            error,
                            restart_in: delay,
                        });
                    }
                }
            }
        }
        events
    }

    /// Stops every service in reverse start order: SIGTERM, then SIGKILL
    /// once `grace` has passed. Returns how each one ended.
    pub fn stop_all(&mut self, grace: Duration) -> Vec<(String, String)> {
        let mut ended = Vec::new();
        for s in self.services.iter_mut().rev() {
            if s.child.is_some() {
                ended.push((s.spec.name.clone(), stop_child(s, grace)));
            }
            s.next_start = None;
        }
        ended
    }
}

/// SIGTERM, then SIGKILL once `grace` has passed; says how it ended.
fn stop_child(s: &mut Service, grace: Duration) -> String {
    s.next_start = None;
    let Some(mut child) = s.child.take() else {
        return "not running".into();
    };
    let pid = Pid::from_raw(child.id() as i32);
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    let mut how = None;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            how = Some(format!("stopped ({status})"));
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let how = how.unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        format!("killed after {} ms", grace.as_millis())
    });
    children::release(child.id());
    how
}

fn start(spec: &ServiceSpec) -> Result<Child, String> {
    if let Some(dir) = spec.log.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)
        .map_err(|e| format!("opening {}: {e}", spec.log.display()))?;
    let err = log
        .try_clone()
        .map_err(|e| format!("{}: {e}", spec.log.display()))?;
    children::spawn(
        Command::new(&spec.program)
            .args(&spec.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err),
    )
    .map_err(|e| format!("starting {}: {e}", spec.program.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            reset_after: Duration::from_secs(10),
        };
        let delays: Vec<u128> = (1..=6).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.delay(200), Duration::from_secs(1));
    }
}
