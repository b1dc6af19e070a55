//! The Kubernetes phase: `kubeadm init` on the control plane or `kubeadm
//! join` on a worker, with the kubelet started by kina-init the moment
//! kubeadm has written its configuration (there is no systemd to start it,
//! and kubeadm only warns when it cannot), then the node's readiness.
//!
//! The order is chosen so that nothing can lock a user out: the admin
//! kubeconfig is published in the status as soon as it works (the API server
//! answers and kubeadm has bound admin.conf's group), before anything that
//! may hang; the ptp CNI needs no API access, so pods network as soon as the
//! kubelet runs; kubelet serving certificates are approved by kina-init's
//! controller from that same moment, so `kubectl logs` and `exec` work
//! without a manual `kubectl certificate approve`.
//!
//! A first boot that finds what an earlier, unfinished kubeadm run left
//! resets it first ([`leftovers`]); a restart at another address moves
//! kubeadm's files to it before the kubelet starts ([`address_change`]).

pub mod address_change;
pub mod apiserver_cert;
pub mod controller;
pub mod csr_policy;
mod files;
pub mod join_token;
mod kubeadm;
pub mod kubectl;
pub mod kubelet;
pub mod leftovers;
pub mod preflight;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kina_contract::kubeadm::KubeVersion;
use kina_contract::node_spec::{KubernetesSettings, NODE_SPEC_PATH, Role};
use kina_contract::status::{KubernetesStatus, PhaseId};

use self::controller::Controller;
use self::kubectl::Kubectl;
use self::kubelet::KubeletPaths;
pub use self::preflight::{REQUIRED_BINARIES, find_binaries, ignored_checks};
use crate::boot::{BootContext, Phase, PhaseFailure};
use crate::children;
use crate::supervise::Supervisor;

/// kina's kubeadm configuration, relative to the node's root.
pub const KUBEADM_CONFIG: &str = "etc/kina/kubeadm.yaml";

pub struct KubernetesPhase {
    /// `/` on a node; a scratch root in tests.
    pub paths: KubeletPaths,
    /// Where the binaries are looked for (the node's PATH).
    pub search_path: Vec<PathBuf>,
    pub supervisor: Arc<Mutex<Supervisor>>,
    pub uplink: String,
    /// The node's address; read from the uplink when `None`.
    pub node_ip: Option<Ipv4Addr>,
    /// Start the control plane's controller (CSR approval, labels, the
    /// join token).
    pub run_controller: bool,
    /// Ends the controller's thread when set (tests; a node never sets it).
    pub controller_stop: Arc<AtomicBool>,
    pub poll: Duration,
}

/// The node image's Kubernetes programs.
struct Tools {
    kubeadm: PathBuf,
    kubelet: PathBuf,
    kubectl: PathBuf,
}

/// What one run of the phase settled before kubeadm runs.
struct Run {
    k: KubernetesSettings,
    tools: Tools,
    version: KubeVersion,
    node_ip: Ipv4Addr,
    deadline: Instant,
    /// kubectl with the admin kubeconfig, which only the control plane has.
    admin: Kubectl,
}

/// What happened while kubeadm ran.
#[derive(Default)]
struct Progress {
    kubelet_started: bool,
    kubeconfig_published: bool,
    controller_started: bool,
}

fn failure(message: impl Into<String>, hint: impl Into<String>) -> PhaseFailure {
    PhaseFailure {
        message: message.into(),
        hint: hint.into(),
    }
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
            controller_stop: Arc::new(AtomicBool::new(false)),
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
        self.paths.root.join(KUBEADM_CONFIG)
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

impl KubernetesPhase {
    /// The node image's kubeadm, kubelet and kubectl, or which it lacks.
    fn locate_tools(&self) -> Result<Tools, PhaseFailure> {
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
        Ok(Tools {
            kubeadm,
            kubelet,
            kubectl,
        })
    }

    /// The image's Kubernetes version, as its kubeadm reports it.
    fn kubeadm_version(tools: &Tools) -> Result<KubeVersion, PhaseFailure> {
        let out = children::output(Command::new(&tools.kubeadm).args(["version", "-o", "short"]))
            .map_err(|e| {
            failure(
                format!("cannot run {}: {e}", tools.kubeadm.display()),
                "the node image's kubeadm must run on this architecture",
            )
        })?;
        KubeVersion::parse(&String::from_utf8_lossy(&out.stdout)).map_err(|e| {
            failure(
                format!("kubeadm version: {e}"),
                "use a node image with a released kubeadm",
            )
        })
    }

    /// The address the node advertises: given, or read from its link.
    fn node_ip(&self, ctx: &BootContext) -> Result<Ipv4Addr, PhaseFailure> {
        match self.node_ip {
            Some(ip) => Ok(ip),
            None => {
                crate::boot::network::uplink_ipv4(ctx.spec.node_link(&self.uplink)).map_err(|e| {
                    failure(
                        e,
                        "the node needs an IPv4 address on its uplink before Kubernetes starts",
                    )
                })
            }
        }
    }

    /// What the phase needs before kubeadm runs, reported in the status.
    fn prepare(&self, ctx: &BootContext, k: KubernetesSettings) -> Result<Run, PhaseFailure> {
        let tools = self.locate_tools()?;
        let version = Self::kubeadm_version(&tools)?;
        let node_ip = self.node_ip(ctx)?;
        let _ = ctx.status.update(|s| {
            s.kubernetes = Some(KubernetesStatus {
                version: version.to_string(),
                node_name: ctx.spec.name.clone(),
                node_ip: node_ip.to_string(),
                ..KubernetesStatus::default()
            });
        });
        Ok(Run {
            deadline: Instant::now() + Duration::from_secs(k.timeout_seconds),
            admin: Kubectl {
                program: tools.kubectl.clone(),
                kubeconfig: self.paths.admin_kubeconfig(),
            },
            k,
            tools,
            version,
            node_ip,
        })
    }

    /// `kubeadm init` or `join`, then the marker that says it is done.
    fn first_boot(
        &self,
        ctx: &BootContext,
        run: &Run,
        progress: &mut Progress,
    ) -> Result<(), PhaseFailure> {
        let Run { k, tools, .. } = run;
        let config = self.write_kubeadm_config(ctx, k, run.version, run.node_ip)?;
        let role = &ctx.spec.role;
        self.reset_leftovers(tools, run.deadline)?;
        match role {
            Role::ControlPlane => {
                self.write_ca(k)?;
                self.init(tools, &config, run.deadline, &run.admin, ctx, progress)?;
            }
            Role::Worker => self.join(tools, &config, k, run.deadline, progress)?,
        }
        // The address kubeadm's files name, for a restart at another one.
        address_change::record(&self.paths.root, run.node_ip)
            .map_err(|e| failure(e, "the node's /var must be writable"))?;
        let marker = self.marker();
        std::fs::create_dir_all(marker.parent().unwrap_or(Path::new("/")))
            .and_then(|()| std::fs::write(&marker, format!("{} {role:?}\n", run.version)))
            .map_err(|e| {
                failure(
                    format!("writing {}: {e}", marker.display()),
                    "the node's /var must be writable",
                )
            })
    }

    /// A node kubeadm has set up before: kubeadm's files are moved to the
    /// node's current address if it changed, then the kubelet starts again
    /// on its own configuration.
    fn restart(&self, run: &Run) -> Result<(), PhaseFailure> {
        let node_ip = run.node_ip;
        let moved = address_change::follow(&self.paths.root, node_ip).map_err(|e| {
            failure(
                format!("following the node's new address {node_ip}: {e}"),
                "the files named are kubeadm's; if one is damaged, recreate the node",
            )
        })?;
        if let Some(m) = moved {
            let from: Vec<String> = m.from.iter().map(ToString::to_string).collect();
            eprintln!(
                "kina-init: node address changed from {} to {node_ip}: rewrote {} file(s){}",
                from.join(", "),
                m.files.len(),
                if m.certificate {
                    " and re-issued the API server's serving certificate"
                } else {
                    ""
                }
            );
        }
        self.start_kubelet(&run.tools.kubelet)
    }

    /// Starts the control plane's controller, once per boot.
    fn start_controller_once(
        &self,
        admin: &Kubectl,
        ctx: &BootContext,
        progress: &mut Progress,
    ) -> Result<(), PhaseFailure> {
        if !self.run_controller || progress.controller_started {
            return Ok(());
        }
        let mut controller = Controller::new(
            admin.clone(),
            self.paths.root.join(NODE_SPEC_PATH.trim_start_matches('/')),
            ctx.spec.clone(),
            ctx.spec.node_link(&self.uplink).to_string(),
            ctx.status.clone(),
        );
        controller.stop = self.controller_stop.clone();
        controller.spawn().map_err(|e| {
            failure(
                format!("starting the controller thread: {e}"),
                "the node is out of resources",
            )
        })?;
        progress.controller_started = true;
        Ok(())
    }

    /// Control plane: waits for the API server (publishing the admin
    /// kubeconfig once it answers), then starts the controller.
    fn await_api_and_start_controller(
        &self,
        ctx: &BootContext,
        run: &Run,
        progress: &mut Progress,
    ) -> Result<(), PhaseFailure> {
        let answered = self.wait_until(run.deadline, || {
            self.publish_when_answering(&run.admin, ctx, progress)
        });
        if !answered {
            return Err(failure(
                format!(
                    "the API server did not let admin.conf in within {} s (it did not answer, or kubeadm had not bound the kubeadm:cluster-admins group)",
                    run.k.timeout_seconds
                ),
                format!(
                    "read {} and the static pods' logs under /var/log/pods",
                    self.log("kubelet.log").display()
                ),
            ));
        }
        self.start_controller_once(&run.admin, ctx, progress)
    }

    /// Waits for the node to be Ready, as `own` sees it; returns the
    /// phase's summary.
    fn await_ready(
        &self,
        ctx: &BootContext,
        run: &Run,
        own: &Kubectl,
    ) -> Result<String, PhaseFailure> {
        let name = &ctx.spec.name;
        if !self.wait_until(run.deadline, || own.node_ready(name).unwrap_or(false)) {
            return Err(failure(
                format!(
                    "node {name} did not become Ready within {} s",
                    run.k.timeout_seconds
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
        Ok(format!(
            "{}: node {name} ({}) Ready",
            run.version, run.node_ip
        ))
    }

    /// Control plane: waits for a CoreDNS replica, recording whether one
    /// came up in time.
    fn await_coredns(
        &self,
        ctx: &BootContext,
        run: &Run,
        own: &Kubectl,
    ) -> Result<(), PhaseFailure> {
        let available = self.wait_until(run.deadline, || own.coredns_available().unwrap_or(false));
        let _ = ctx.status.update(|s| {
            if let Some(ks) = &mut s.kubernetes {
                ks.coredns_available = Some(available);
            }
        });
        if available {
            return Ok(());
        }
        Err(failure(
            format!(
                "CoreDNS had no available replica within {} s",
                run.k.timeout_seconds
            ),
            "kubectl -n kube-system describe deployment coredns (with the admin kubeconfig) says why; or set wait_for_coredns off",
        ))
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
        let run = self.prepare(ctx, k)?;
        let mut progress = Progress::default();
        let first_boot = !self.marker().exists();
        if first_boot {
            self.first_boot(ctx, &run, &mut progress)?;
        } else {
            self.restart(&run)?;
        }
        let own = match role {
            Role::ControlPlane => {
                self.await_api_and_start_controller(ctx, &run, &mut progress)?;
                run.admin.clone()
            }
            Role::Worker => Kubectl {
                program: run.tools.kubectl.clone(),
                kubeconfig: self.paths.kubeconfig(),
            },
        };
        if ctx.spec.disable_default_cni {
            // kind's disableDefaultCNI: the node is NotReady (and CoreDNS
            // pending) until the user's CNI runs, so neither is waited for.
            return Ok(format!(
                "{}: node {} joined; NotReady until a CNI is installed (disableDefaultCNI)",
                run.version, ctx.spec.name
            ));
        }
        let mut summary = self.await_ready(ctx, &run, &own)?;
        if role == Role::ControlPlane && run.k.wait_for_coredns {
            self.await_coredns(ctx, &run, &own)?;
            summary.push_str(", CoreDNS available");
        }
        if !first_boot {
            summary.push_str(" (restarted: kubeadm not run again)");
        }
        Ok(summary)
    }
}
