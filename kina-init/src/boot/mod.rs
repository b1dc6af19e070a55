//! Boot as an ordered list of phases (mount → … → ready), each logged on the
//! console with its duration and recorded in the status file, like kind's
//! create actions and Talos's sequencer. A failed phase records what failed,
//! why and what to do, and the boot stops there: the node stays up for
//! inspection instead of crash-looping.

pub mod cgroups;
pub mod cni_config;
pub mod containerd;
pub mod go_buildinfo;
pub mod identity;
pub mod images;
pub mod kernel;
pub mod modules;
pub mod modules_dep;
pub mod mount;
pub mod network;
pub mod resolv_conf;
pub mod sysctls;
pub mod tso;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use kina_contract::kernel::Report;
use kina_contract::node_spec::NodeSpec;
use kina_contract::status::{NodeStatus, PhaseId, PhaseState};

/// What phases share: the spec, and what earlier phases learned.
pub struct BootContext {
    pub spec: NodeSpec,
    /// The kernel phase's report; the modules phase loads what it marks `=m`.
    pub kernel_report: Option<Report>,
    /// For what a phase must report before it ends (the Kubernetes phase
    /// publishes the admin kubeconfig as soon as the API server answers).
    pub status: StatusFile,
}

/// The node status and the file it is kept in, shared by the boot thread
/// and the services that report after boot (the Kubernetes controller).
#[derive(Clone)]
pub struct StatusFile {
    path: PathBuf,
    status: Arc<Mutex<NodeStatus>>,
}

impl StatusFile {
    pub fn new(path: impl Into<PathBuf>, status: NodeStatus) -> Self {
        Self {
            path: path.into(),
            status: Arc::new(Mutex::new(status)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn snapshot(&self) -> NodeStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Changes the status in memory only (before /run exists).
    fn change(&self, f: impl FnOnce(&mut NodeStatus)) {
        f(&mut self.status.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Changes the status and replaces the file atomically, so readers never
    /// see half of it; the lock orders concurrent writers.
    pub fn update(&self, f: impl FnOnce(&mut NodeStatus)) -> std::io::Result<()> {
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut status);
        let dir = self
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        std::fs::create_dir_all(&dir)?;
        let name = self
            .path
            .file_name()
            .map_or_else(|| "status".into(), |n| n.to_string_lossy());
        let tmp = dir.join(format!(".{name}.tmp"));
        let bytes = serde_json::to_vec_pretty(&*status).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, &self.path)
    }
}

/// Why a phase failed and the way out, for the console and the status file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseFailure {
    pub message: String,
    pub hint: String,
}

pub trait Phase {
    /// Which record of the status file the phase reports in.
    fn id(&self) -> PhaseId;
    /// Whether the status file may be written when the phase starts. The
    /// file lives on /run, which the mount phase provides: written before
    /// it, it would land on the root disk underneath the tmpfs and be read
    /// as a stale status later.
    fn writes_status_file(&self) -> bool {
        true
    }
    /// Does the work; returns a one-line summary.
    fn run(&mut self, ctx: &mut BootContext) -> Result<String, PhaseFailure>;
}

/// Runs `phases` in order, writing the status file after every change.
/// Returns the failed phase, if one failed.
pub fn run_phases(
    phases: &mut [Box<dyn Phase>],
    ctx: &mut BootContext,
    console: &mut dyn Write,
    stop_after: Option<PhaseId>,
) -> Option<PhaseId> {
    let status = ctx.status.clone();
    let write = |console: &mut dyn Write, f: &dyn Fn(&mut NodeStatus)| {
        if let Err(e) = status.update(f) {
            let _ = writeln!(
                console,
                "kina-init: cannot write {}: {e}",
                status.path().display()
            );
        }
    };
    let mut failed = None;
    let mut stopped = false;
    for phase in phases.iter_mut() {
        let name = phase.id();
        if failed.is_some() || stopped {
            status.change(|s| set_state(s, name, PhaseState::Skipped));
            continue;
        }
        if phase.writes_status_file() {
            write(console, &|s| set_state(s, name, PhaseState::Running));
        } else {
            status.change(|s| set_state(s, name, PhaseState::Running));
        }
        let started = Instant::now();
        let result = phase.run(ctx);
        let ms = started.elapsed().as_millis() as u64;
        status.change(|s| {
            if let Some(p) = s.phase_mut(name) {
                p.duration_ms = ms;
                match &result {
                    Ok(message) => {
                        p.state = PhaseState::Ok;
                        p.message = message.clone();
                    }
                    Err(f) => {
                        p.state = PhaseState::Failed;
                        p.message = f.message.clone();
                        p.hint = Some(f.hint.clone());
                    }
                }
            }
        });
        let line = match &result {
            Ok(message) => format!("kina-init: {name} ok ({ms} ms): {message}\n"),
            Err(f) => format!(
                "kina-init: {name} FAILED ({ms} ms): {}\nkina-init:   what to do: {}\n",
                f.message, f.hint
            ),
        };
        let _ = console.write_all(line.as_bytes());
        if result.is_err() {
            failed = Some(name);
        }
        if stop_after == Some(name) {
            stopped = true;
        }
    }
    write(console, &|_| {});
    failed
}

fn set_state(status: &mut NodeStatus, name: PhaseId, state: PhaseState) {
    if let Some(p) = status.phase_mut(name) {
        p.state = state;
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use kina_contract::node_spec::Role;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A status file of its own for each test (they run in parallel).
    pub fn scratch_status() -> StatusFile {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        StatusFile::new(
            std::env::temp_dir()
                .join(format!("kina-test-{}-{n}", std::process::id()))
                .join("status.json"),
            NodeStatus::new("n1", "vm-pid1"),
        )
    }

    pub fn ctx() -> BootContext {
        BootContext {
            spec: NodeSpec {
                name: "n1".into(),
                cluster: "kina".into(),
                role: Role::Worker,
                pod_cidr: "10.244.1.0/24".into(),
                ..NodeSpec::unnamed()
            },
            kernel_report: None,
            status: scratch_status(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::ctx;
    use super::*;

    struct Fixed(PhaseId, Result<&'static str, &'static str>);
    impl Phase for Fixed {
        fn id(&self) -> PhaseId {
            self.0
        }
        fn run(&mut self, _: &mut BootContext) -> Result<String, PhaseFailure> {
            self.1.map(str::to_string).map_err(|m| PhaseFailure {
                message: m.to_string(),
                hint: "do this".into(),
            })
        }
    }

    #[test]
    fn a_failed_phase_is_recorded_with_its_hint_and_later_phases_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/kina/status.json");
        let mut phases: Vec<Box<dyn Phase>> = vec![
            Box::new(Fixed(PhaseId::Mount, Ok("mounted 4"))),
            Box::new(Fixed(PhaseId::Kernel, Err("kernel lacks CONFIG_VETH"))),
            Box::new(Fixed(PhaseId::Modules, Ok("never"))),
        ];
        let mut ctx = ctx();
        ctx.status = StatusFile::new(&path, NodeStatus::new("n1", "vm-pid1"));
        let mut console = Vec::new();
        let failed = run_phases(&mut phases, &mut ctx, &mut console, None);
        assert_eq!(failed, Some(PhaseId::Kernel));
        let written: NodeStatus = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(written.phase("mount").unwrap().state, PhaseState::Ok);
        let kernel = written.phase("kernel").unwrap();
        assert_eq!(kernel.state, PhaseState::Failed);
        assert_eq!(kernel.hint.as_deref(), Some("do this"));
        assert_eq!(written.phase("modules").unwrap().state, PhaseState::Skipped);
        let console = String::from_utf8(console).unwrap();
        assert!(
            console.contains("kina-init: mount ok (") && console.contains("kernel FAILED"),
            "{console}"
        );
    }

    /// Notes whether the status file existed when it ran.
    struct SeesStatusFile {
        id: PhaseId,
        writes: bool,
        saw: Arc<Mutex<Vec<(PhaseId, bool)>>>,
    }
    impl Phase for SeesStatusFile {
        fn id(&self) -> PhaseId {
            self.id
        }
        fn writes_status_file(&self) -> bool {
            self.writes
        }
        fn run(&mut self, ctx: &mut BootContext) -> Result<String, PhaseFailure> {
            let exists = ctx.status.path().exists();
            self.saw.lock().unwrap().push((self.id, exists));
            Ok(String::new())
        }
    }

    #[test]
    fn a_phase_that_provides_the_status_files_place_starts_without_writing_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/kina/status.json");
        let saw = Arc::new(Mutex::new(Vec::new()));
        let mut phases: Vec<Box<dyn Phase>> = [(PhaseId::Mount, false), (PhaseId::Cgroups, true)]
            .into_iter()
            .map(|(id, writes)| -> Box<dyn Phase> {
                Box::new(SeesStatusFile {
                    id,
                    writes,
                    saw: saw.clone(),
                })
            })
            .collect();
        let mut ctx = ctx();
        ctx.status = StatusFile::new(&path, NodeStatus::new("n1", "vm-pid1"));
        assert_eq!(
            run_phases(&mut phases, &mut ctx, &mut Vec::new(), None),
            None
        );
        assert_eq!(
            *saw.lock().unwrap(),
            [(PhaseId::Mount, false), (PhaseId::Cgroups, true)]
        );
        let written: NodeStatus = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(written.phase(PhaseId::Mount).unwrap().state, PhaseState::Ok);
    }

    #[test]
    fn stop_after_ends_the_boot_after_that_phase() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        let mut phases: Vec<Box<dyn Phase>> = vec![
            Box::new(Fixed(PhaseId::Mount, Ok("a"))),
            Box::new(Fixed(PhaseId::Cgroups, Ok("b"))),
            Box::new(Fixed(PhaseId::Identity, Ok("c"))),
        ];
        let mut ctx = ctx();
        ctx.status = StatusFile::new(&path, NodeStatus::new("n1", "vm-pid1"));
        let failed = run_phases(
            &mut phases,
            &mut ctx,
            &mut Vec::new(),
            Some(PhaseId::Cgroups),
        );
        assert_eq!(failed, None);
        assert_eq!(
            ctx.status
                .snapshot()
                .phase(PhaseId::Identity)
                .unwrap()
                .state,
            PhaseState::Skipped
        );
    }
}
