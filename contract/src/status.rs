//! The node status: what kina-init reports about its boot, in one versioned
//! schema read by `kina-init status` inside the node and by the host.

use serde::{Deserialize, Serialize};

pub const STATUS_VERSION: u32 = 1;

/// Where kina-init keeps the status inside a node.
pub const STATUS_PATH: &str = "/run/kina/status.json";

/// The boot phases, in order.
pub const PHASES: [&str; 11] = [
    "mount",
    "cgroups",
    "identity",
    "kernel",
    "modules",
    "sysctls",
    "network",
    "containerd",
    "images",
    "kubernetes",
    "ready",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PhaseState {
    Pending,
    Running,
    Ok,
    Failed,
    /// Not run: an earlier phase failed, or `--stop-after` ended the boot.
    Skipped,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseStatus {
    pub name: String,
    pub state: PhaseState,
    #[serde(default)]
    pub duration_ms: u64,
    /// One line: what was done, or what failed and why.
    #[serde(default)]
    pub message: String,
    /// For a failure: what the user can do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub version: u32,
    pub node: String,
    /// How kina-init runs: `vm-pid1` (QEMU) or `container-pid1` (Apple).
    pub mode: String,
    pub phases: Vec<PhaseStatus>,
    /// Present once the Kubernetes phase has started on a node that runs
    /// Kubernetes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesStatus {
    /// The image's Kubernetes version, as kubeadm reports it.
    pub version: String,
    pub node_name: String,
    pub node_ip: String,
    /// Where the admin kubeconfig is, set as soon as the API server answers
    /// (before anything that may hang), so the host can always fetch it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_kubeconfig: Option<String>,
    /// The node's `Ready` condition.
    pub ready: bool,
    /// Control plane only: CoreDNS has an available replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coredns_available: Option<bool>,
}

impl NodeStatus {
    pub fn new(node: &str, mode: &str) -> Self {
        Self {
            version: STATUS_VERSION,
            node: node.to_string(),
            mode: mode.to_string(),
            phases: PHASES
                .iter()
                .map(|p| PhaseStatus {
                    name: p.to_string(),
                    state: PhaseState::Pending,
                    duration_ms: 0,
                    message: String::new(),
                    hint: None,
                })
                .collect(),
            kubernetes: None,
        }
    }

    pub fn phase(&self, name: &str) -> Option<&PhaseStatus> {
        self.phases.iter().find(|p| p.name == name)
    }

    pub fn phase_mut(&mut self, name: &str) -> Option<&mut PhaseStatus> {
        self.phases.iter_mut().find(|p| p.name == name)
    }

    pub fn failed(&self) -> Option<&PhaseStatus> {
        self.phases.iter().find(|p| p.state == PhaseState::Failed)
    }

    /// One line per phase, as `kina-init status` prints it.
    pub fn render(&self) -> String {
        let mut out = format!("node {} ({})\n", self.node, self.mode);
        for p in &self.phases {
            let state = match p.state {
                PhaseState::Pending => "pending",
                PhaseState::Running => "running",
                PhaseState::Ok => "ok",
                PhaseState::Failed => "FAILED",
                PhaseState::Skipped => "skipped",
            };
            out.push_str(&format!(
                "{:<11} {:<8} {:>6} ms  {}\n",
                p.name, state, p.duration_ms, p.message
            ));
            if let Some(hint) = &p.hint {
                out.push_str(&format!("{:<29}{hint}\n", ""));
            }
        }
        if let Some(k) = &self.kubernetes {
            out.push_str(&format!(
                "kubernetes {} node {} ({}): {}{}{}\n",
                k.version,
                k.node_name,
                k.node_ip,
                if k.ready { "Ready" } else { "not Ready" },
                match k.coredns_available {
                    Some(true) => ", CoreDNS available",
                    Some(false) => ", CoreDNS not available",
                    None => "",
                },
                k.admin_kubeconfig
                    .as_deref()
                    .map(|p| format!(", admin kubeconfig {p}"))
                    .unwrap_or_default(),
            ));
        }
        out
    }
}
