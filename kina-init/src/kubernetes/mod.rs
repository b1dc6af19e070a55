//! The Kubernetes phase: `kubeadm init` on the control plane or `kubeadm
//! join` on a worker, with the kubelet started by kina-init the moment
//! kubeadm has written its configuration (there is no systemd to start it,
//! and kubeadm only warns when it cannot), then the node's readiness.
//!
//! The order is chosen so that nothing can lock a user out: the admin
//! kubeconfig is published in the status as soon as the API server answers,
//! before anything that may hang; the ptp CNI needs no API access, so pods
//! network as soon as the kubelet runs; kubelet serving certificates are
//! approved by kina-init's controller, so `kubectl logs` and `exec` work
//! without a manual `kubectl certificate approve`.

pub mod controller;
pub mod csr_policy;
pub mod kubeadm_config;
pub mod kubectl;
pub mod kubelet;

use std::fs::OpenOptions;
use std::io::Write;
use std::net::{Ipv4Addr, TcpStream, ToSocketAddrs};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kina_contract::node_spec::{KubernetesSettings, NODE_SPEC_PATH, Role};
use kina_contract::status::{KubernetesStatus, PhaseId};

use self::controller::Controller;
use self::kubeadm_config::{IgnoredCheck, Inputs, KubeVersion};
use self::kubectl::Kubectl;
use self::kubelet::{KubeletPaths, kubelet_args, refresh_node_ip};
use crate::boot::{BootContext, Phase, PhaseFailure};
use crate::children;
use crate::supervise::{ServiceSpec, Supervisor};

/// Between join attempts: the control plane may be mid-init (its API
/// server answers before the bootstrap token exists).
const JOIN_RETRY_PAUSE: Duration = Duration::from_secs(3);

/// The programs the phase runs, all from the node image.
pub const REQUIRED_BINARIES: [&str; 3] = ["kubeadm", "kubelet", "kubectl"];

pub struct KubernetesPhase {
    /// `/` on a node; a scratch root in tests.
    pub paths: KubeletPaths,
    /// Where the binaries are looked for (the node's PATH).
    pub search_path: Vec<PathBuf>,
    pub supervisor: Arc<Mutex<Supervisor>>,
    pub uplink: String,
    /// The node's address; read from the uplink when `None`.
    pub node_ip: Option<Ipv4Addr>,
    /// Start the control plane's controller (CSR approval, labels).
    pub run_controller: bool,
    pub poll: Duration,
}

/// The node image's Kubernetes programs.
struct Tools {
    kubeadm: PathBuf,
    kubelet: PathBuf,
    kubectl: PathBuf,
}

/// What happened while kubeadm ran.
#[derive(Default)]
struct Progress {
    kubelet_started: bool,
    kubeconfig_published: bool,
}

fn failure(message: impl Into<String>, hint: impl Into<String>) -> PhaseFailure {
    PhaseFailure {
        message: message.into(),
        hint: hint.into(),
    }
}

/// Looks `names` up in `dirs`; the missing ones are named all at once.
pub fn find_binaries(dirs: &[PathBuf], names: &[&str]) -> Result<Vec<PathBuf>, Vec<String>> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in names {
        match dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
            Some(path) => found.push(path),
            None => missing.push(name.to_string()),
        }
    }
    if missing.is_empty() {
        Ok(found)
    } else {
        Err(missing)
    }
}

/// The preflight checks that cannot pass on this node, each with its
/// reason; everything else kubeadm checks as usual.
pub fn ignored_checks(
    role: &Role,
    cpus: usize,
    memory_mb: u64,
    kernel_config_found: bool,
) -> Vec<IgnoredCheck> {
    let mut ignored = Vec::new();
    if *role == Role::ControlPlane && cpus < 2 {
        ignored.push(IgnoredCheck {
            name: "NumCPU",
            why: format!(
                "the node has {cpus} CPU; kubeadm asks 2 of a production control plane, a local one runs on fewer"
            ),
        });
    }
    if *role == Role::ControlPlane && memory_mb < 1700 {
        ignored.push(IgnoredCheck {
            name: "Mem",
            why: format!(
                "the node has {memory_mb} MB; kubeadm asks 1700 MB of a production control plane"
            ),
        });
    }
    if !kernel_config_found {
        ignored.push(IgnoredCheck {
            name: "SystemVerification",
            why: "kubeadm's validator cannot read this kernel's configuration (none in /proc/config.gz or /boot); kina-init's kernel phase checked the running kernel against its profiles instead".into(),
        });
    }
    ignored
}

fn node_resources() -> (usize, u64) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory_mb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024);
    (cpus, memory_mb)
}

fn kernel_config_found() -> bool {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    [
        "/proc/config.gz".to_string(),
        format!("/boot/config-{release}"),
        format!("/lib/modules/{release}/config"),
    ]
    .iter()
    .any(|p| Path::new(p).exists())
}

/// Writes `bytes` to `path` readable by root only, replacing it atomically.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// The last `n` lines of a log, for an error message.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl KubernetesPhase {
    pub fn for_node(supervisor: Arc<Mutex<Supervisor>>, uplink: &str) -> Self {
        Self {
            paths: KubeletPaths { root: "/".into() },
            search_path: children::NODE_PATH.split(':').map(PathBuf::from).collect(),
            supervisor,
            uplink: uplink.to_string(),
            node_ip: None,
            run_controller: true,
            poll: Duration::from_millis(500),
        }
    }

    fn log(&self, name: &str) -> PathBuf {
        self.paths.root.join("var/log/kina").join(name)
    }

    fn marker(&self) -> PathBuf {
        self.paths.root.join("var/lib/kina/kubeadm.done")
    }

    fn config_file(&self) -> PathBuf {
        self.paths.root.join("etc/kina/kubeadm.yaml")
    }

    fn start_kubelet(&self, kubelet: &Path) -> Result<(), PhaseFailure> {
        let args = kubelet_args(&self.paths).map_err(|e| {
            failure(
                format!("cannot build the kubelet's command line: {e}"),
                "kubeadm writes /var/lib/kubelet/kubeadm-flags.env; read /var/log/kina/kubeadm.log",
            )
        })?;
        let mut supervisor = self
            .supervisor
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !supervisor.has("kubelet") {
            supervisor.add(ServiceSpec {
                name: "kubelet".into(),
                program: kubelet.to_path_buf(),
                args,
                log: self.log("kubelet.log"),
            });
        }
        Ok(())
    }

    /// Publishes the admin kubeconfig once the API server answers.
    fn publish_when_answering(
        &self,
        admin: &Kubectl,
        ctx: &BootContext,
        progress: &mut Progress,
    ) -> bool {
        if !progress.kubeconfig_published && admin.api_answers() {
            let path = self.paths.admin_kubeconfig().display().to_string();
            let _ = ctx.status.update(|s| {
                if let Some(k) = &mut s.kubernetes {
                    k.admin_kubeconfig = Some(path);
                }
            });
            progress.kubeconfig_published = true;
        }
        progress.kubeconfig_published
    }

    /// Runs kubeadm with its output in kubeadm.log, starting the kubelet as
    /// soon as kubeadm has configured it and, on the control plane,
    /// publishing the admin kubeconfig as soon as the API server answers.
    fn run_kubeadm(
        &self,
        kubeadm: &Path,
        args: &[String],
        deadline: Instant,
        mut tick: impl FnMut() -> Result<(), PhaseFailure>,
    ) -> Result<(), PhaseFailure> {
        let log_path = self.log("kubeadm.log");
        let open_log = || -> Result<std::fs::File, String> {
            if let Some(dir) = log_path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("creating {}: {e}", dir.display()))?;
            }
            // kubeadm's output names the cluster's endpoints and files;
            // root's to read, like the configuration it came from.
            OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&log_path)
                .map_err(|e| format!("opening {}: {e}", log_path.display()))
        };
        let (mut out, err) = open_log()
            .and_then(|f| Ok((f.try_clone().map_err(|e| e.to_string())?, f)))
            .map_err(|e| failure(e, "the node's /var/log must be writable"))?;
        let _ = writeln!(out, "kina-init: running kubeadm {}", args.join(" "));
        let mut child = children::spawn(
            Command::new(kubeadm)
                .args(args)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err),
        )
        .map_err(|e| {
            failure(
                format!("cannot run {}: {e}", kubeadm.display()),
                "the node image's kubeadm must run on this architecture",
            )
        })?;
        let pid = child.id();
        let outcome = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) => {}
                Err(e) => break Err(format!("waiting for kubeadm: {e}")),
            }
            if let Err(f) = tick() {
                let _ = child.kill();
                let _ = child.wait();
                children::release(pid);
                return Err(f);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break Err("kubeadm did not finish in time and was stopped".to_string());
            }
            std::thread::sleep(self.poll);
        };
        children::release(pid);
        let verb = args.first().map_or("kubeadm", String::as_str);
        let hint = format!(
            "read {} (kubeadm) and {} (kubelet)",
            log_path.display(),
            self.log("kubelet.log").display()
        );
        match outcome {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(failure(
                format!(
                    "kubeadm {verb} failed ({status}); it said:\n{}",
                    tail(&log_path, 15)
                ),
                hint,
            )),
            Err(e) => Err(failure(e, hint)),
        }
    }

    fn write_ca(&self, k: &KubernetesSettings) -> Result<(), PhaseFailure> {
        let Some(ca) = &k.certificate_authority else {
            return Ok(());
        };
        let dir = self.paths.pki_dir();
        let (crt, key) = (dir.join("ca.crt"), dir.join("ca.key"));
        if crt.exists() && key.exists() {
            return Ok(());
        }
        let hint = "the node's /etc/kubernetes must be writable";
        write_private(&key, ca.key_pem.expose().as_bytes()).map_err(|e| failure(e, hint))?;
        std::fs::write(&crt, &ca.cert_pem)
            .map_err(|e| failure(format!("writing {}: {e}", crt.display()), hint))
    }

    /// Waits until the API server's port accepts connections (a worker
    /// may boot before the control plane).
    fn wait_for_endpoint(&self, endpoint: &str, deadline: Instant) -> Result<(), PhaseFailure> {
        loop {
            let reachable = endpoint.to_socket_addrs().ok().is_some_and(|mut addrs| {
                addrs.any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
            });
            if reachable {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(failure(
                    format!("the API server at {endpoint} did not answer in time"),
                    "check that the control plane node is up (`kina node status`) and that this node reaches it",
                ));
            }
            std::thread::sleep(self.poll.max(Duration::from_millis(500)));
        }
    }

    /// kubeadm's configuration for this node, written 0600 (it holds the
    /// bootstrap token); returns its path.
    fn write_kubeadm_config(
        &self,
        ctx: &BootContext,
        k: &KubernetesSettings,
        version: KubeVersion,
        node_ip: Ipv4Addr,
    ) -> Result<PathBuf, PhaseFailure> {
        let (cpus, memory_mb) = node_resources();
        let ignored = ignored_checks(&ctx.spec.role, cpus, memory_mb, kernel_config_found());
        for check in &ignored {
            eprintln!(
                "kina-init: kubeadm preflight check {} ignored: {}",
                check.name, check.why
            );
        }
        let inputs = Inputs {
            spec: &ctx.spec,
            kubernetes: k,
            version,
            node_ip,
            ignored_checks: &ignored,
        };
        let docs = kubeadm_config::for_node(&inputs).map_err(|e| {
            failure(
                format!("kubeadm configuration: {e}"),
                "fix the cluster's Kubernetes settings or kubeadmConfigPatches",
            )
        })?;
        let config = self.config_file();
        write_private(&config, kubeadm_config::render(&docs).as_bytes())
            .map_err(|e| failure(e, "the node's /etc must be writable"))?;
        Ok(config)
    }

    /// What every round of waiting for kubeadm does: start the kubelet as
    /// soon as kubeadm has configured it.
    fn start_kubelet_when_configured(
        &self,
        tools: &Tools,
        progress: &mut Progress,
    ) -> Result<(), PhaseFailure> {
        if !progress.kubelet_started && self.paths.kubelet_configured() {
            self.start_kubelet(&tools.kubelet)?;
            progress.kubelet_started = true;
        }
        Ok(())
    }

    fn init(
        &self,
        tools: &Tools,
        config: &Path,
        deadline: Instant,
        admin: &Kubectl,
        ctx: &BootContext,
        progress: &mut Progress,
    ) -> Result<(), PhaseFailure> {
        let args = [
            "init".to_string(),
            format!("--config={}", config.display()),
            // The token is a secret; kubeadm's default verbosity logs
            // neither it nor the key.
            "--skip-token-print".into(),
        ];
        self.run_kubeadm(&tools.kubeadm, &args, deadline, || {
            self.start_kubelet_when_configured(tools, progress)?;
            self.publish_when_answering(admin, ctx, progress);
            Ok(())
        })?;
        // kubeadm's kubelet-finalize rewrote kubelet.conf and could not
        // restart the kubelet without systemd.
        self.supervisor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .restart("kubelet");
        Ok(())
    }

    /// `kubeadm join`, retried after `kubeadm reset` until it succeeds or
    /// the deadline leaves no room for another attempt.
    fn join(
        &self,
        tools: &Tools,
        config: &Path,
        k: &KubernetesSettings,
        deadline: Instant,
        progress: &mut Progress,
    ) -> Result<(), PhaseFailure> {
        let args = ["join".to_string(), format!("--config={}", config.display())];
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.wait_for_endpoint(&k.control_plane_endpoint, deadline)?;
            let joined = self.run_kubeadm(&tools.kubeadm, &args, deadline, || {
                self.start_kubelet_when_configured(tools, progress)
            });
            // A retry needs time for `kubeadm reset`, a pause and a join:
            // without it, report this attempt's reason.
            let time_left = deadline.saturating_duration_since(Instant::now());
            match joined {
                Ok(()) => return Ok(()),
                Err(f) if time_left > JOIN_RETRY_PAUSE * 2 => {
                    eprintln!(
                        "kina-init: join attempt {attempt} failed, retrying: {}",
                        f.message
                    );
                    self.supervisor
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove("kubelet", Duration::from_secs(5));
                    progress.kubelet_started = false;
                    let reset = ["reset".to_string(), "--force".into()];
                    if let Err(e) = self.run_kubeadm(&tools.kubeadm, &reset, deadline, || Ok(())) {
                        eprintln!(
                            "kina-init: kubeadm reset before the next join: {}",
                            e.message
                        );
                    }
                    std::thread::sleep(JOIN_RETRY_PAUSE);
                }
                Err(f) => {
                    return Err(failure(
                        format!(
                            "could not join through {} within {} s ({attempt} attempts): {}",
                            k.control_plane_endpoint, k.timeout_seconds, f.message
                        ),
                        f.hint,
                    ));
                }
            }
        }
    }

    fn wait_until(&self, deadline: Instant, mut check: impl FnMut() -> bool) -> bool {
        loop {
            if check() {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(self.poll);
        }
    }
}

impl Phase for KubernetesPhase {
    fn id(&self) -> PhaseId {
        PhaseId::Kubernetes
    }

    fn run(&mut self, ctx: &mut BootContext) -> Result<String, PhaseFailure> {
        let Some(k) = ctx.spec.kubernetes.clone() else {
            return Ok("the node spec asks for no Kubernetes: nothing to start".into());
        };
        let role = ctx.spec.role.clone();
        k.check_for(&role)
            .map_err(|e| failure(format!("node spec: {e}"), "recreate the node with kina"))?;
        let binaries = find_binaries(&self.search_path, &REQUIRED_BINARIES).map_err(|missing| {
            failure(
                format!(
                    "the node image has no {} (looked in {})",
                    missing.join(", "),
                    self.search_path
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(":")
                ),
                "build the node image from a Kubernetes recipe (recipes/kubernetes-v1.36.toml); recipes/base.toml makes containerd-only nodes, which boot without a `kubernetes` section in their spec",
            )
        })?;
        let [kubeadm, kubelet, kubectl] = <[PathBuf; 3]>::try_from(binaries).map_err(|found| {
            failure(
                format!("found {} of the 3 Kubernetes programs", found.len()),
                "the node image needs kubeadm, kubelet and kubectl",
            )
        })?;
        let tools = Tools {
            kubeadm,
            kubelet,
            kubectl,
        };
        let version_out =
            children::output(Command::new(&tools.kubeadm).args(["version", "-o", "short"]))
                .map_err(|e| {
                    failure(
                        format!("cannot run {}: {e}", tools.kubeadm.display()),
                        "the node image's kubeadm must run on this architecture",
                    )
                })?;
        let version =
            KubeVersion::parse(&String::from_utf8_lossy(&version_out.stdout)).map_err(|e| {
                failure(
                    format!("kubeadm version: {e}"),
                    "use a node image with a released kubeadm",
                )
            })?;
        let node_ip = match self.node_ip {
            Some(ip) => ip,
            None => crate::boot::network::uplink_ipv4(ctx.spec.node_link(&self.uplink)).map_err(
                |e| {
                    failure(
                        e,
                        "the node needs an IPv4 address on its uplink before Kubernetes starts",
                    )
                },
            )?,
        };
        let _ = ctx.status.update(|s| {
            s.kubernetes = Some(KubernetesStatus {
                version: version.to_string(),
                node_name: ctx.spec.name.clone(),
                node_ip: node_ip.to_string(),
                ..KubernetesStatus::default()
            });
        });
        let deadline = Instant::now() + Duration::from_secs(k.timeout_seconds);
        let admin = Kubectl {
            program: tools.kubectl.clone(),
            kubeconfig: self.paths.admin_kubeconfig(),
        };
        let mut progress = Progress::default();
        let first_boot = !self.marker().exists();
        if first_boot {
            let config = self.write_kubeadm_config(ctx, &k, version, node_ip)?;
            match role {
                Role::ControlPlane => {
                    self.write_ca(&k)?;
                    self.init(&tools, &config, deadline, &admin, ctx, &mut progress)?;
                }
                Role::Worker => self.join(&tools, &config, &k, deadline, &mut progress)?,
            }
            std::fs::create_dir_all(self.marker().parent().unwrap_or(Path::new("/")))
                .and_then(|()| std::fs::write(self.marker(), format!("{version} {role:?}\n")))
                .map_err(|e| {
                    failure(
                        format!("writing {}: {e}", self.marker().display()),
                        "the node's /var must be writable",
                    )
                })?;
        } else {
            if let Some(old) = refresh_node_ip(&self.paths, node_ip).map_err(|e| {
                failure(
                    e,
                    "kubeadm's kubelet flags file is damaged; recreate the node",
                )
            })? {
                eprintln!(
                    "kina-init: node address changed from {old} to {node_ip}; the kubelet advertises the new one"
                );
            }
            self.start_kubelet(&tools.kubelet)?;
        }

        let own = match role {
            Role::ControlPlane => {
                let answered = self.wait_until(deadline, || {
                    self.publish_when_answering(&admin, ctx, &mut progress)
                });
                if !answered {
                    return Err(failure(
                        format!(
                            "the API server did not answer within {} s",
                            k.timeout_seconds
                        ),
                        format!(
                            "read {} and the static pods' logs under /var/log/pods",
                            self.log("kubelet.log").display()
                        ),
                    ));
                }
                if self.run_controller {
                    Controller::new(
                        admin.clone(),
                        PathBuf::from(NODE_SPEC_PATH),
                        ctx.spec.clone(),
                        ctx.spec.node_link(&self.uplink).to_string(),
                        ctx.status.clone(),
                    )
                    .spawn()
                    .map_err(|e| {
                        failure(
                            format!("starting the controller thread: {e}"),
                            "the node is out of resources",
                        )
                    })?;
                }
                admin.clone()
            }
            Role::Worker => Kubectl {
                program: tools.kubectl.clone(),
                kubeconfig: self.paths.kubeconfig(),
            },
        };
        let name = ctx.spec.name.clone();
        if !self.wait_until(deadline, || own.node_ready(&name).unwrap_or(false)) {
            return Err(failure(
                format!(
                    "node {name} did not become Ready within {} s",
                    k.timeout_seconds
                ),
                format!(
                    "read {} (`kina node exec {name} -- kubectl describe node {name}` on the control plane shows the conditions)",
                    self.log("kubelet.log").display()
                ),
            ));
        }
        let _ = ctx.status.update(|s| {
            if let Some(ks) = &mut s.kubernetes {
                ks.ready = true;
            }
        });
        let mut summary = format!("{version}: node {name} ({node_ip}) Ready");
        if role == Role::ControlPlane && k.wait_for_coredns {
            let available = self.wait_until(deadline, || own.coredns_available().unwrap_or(false));
            let _ = ctx.status.update(|s| {
                if let Some(ks) = &mut s.kubernetes {
                    ks.coredns_available = Some(available);
                }
            });
            if !available {
                return Err(failure(
                    format!(
                        "CoreDNS had no available replica within {} s",
                        k.timeout_seconds
                    ),
                    "kubectl -n kube-system describe deployment coredns (with the admin kubeconfig) says why; or set wait_for_coredns off",
                ));
            }
            summary.push_str(", CoreDNS available");
        }
        if !first_boot {
            summary.push_str(" (restarted: kubeadm not run again)");
        }
        Ok(summary)
    }
}
