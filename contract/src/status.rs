//! The node status: what kina-init reports about its boot, in one versioned
//! schema read by `kina-init status` inside the node and by the host.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub const STATUS_VERSION: u32 = 1;

/// Where kina-init keeps the status inside a node.
pub const STATUS_PATH: &str = "/run/kina/status.json";

/// A boot phase. Its kebab-case name is what the status file records and
/// what a node spec's `stop_after` names, so a phase the boot sequence runs
/// and the record it updates cannot drift apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PhaseId {
    Mount,
    Cgroups,
    Identity,
    Kernel,
    Modules,
    Sysctls,
    Network,
    Containerd,
    Images,
    Kubernetes,
    Ready,
}

impl PhaseId {
    /// Every phase, in boot order.
    pub const ALL: [PhaseId; 11] = [
        PhaseId::Mount,
        PhaseId::Cgroups,
        PhaseId::Identity,
        PhaseId::Kernel,
        PhaseId::Modules,
        PhaseId::Sysctls,
        PhaseId::Network,
        PhaseId::Containerd,
        PhaseId::Images,
        PhaseId::Kubernetes,
        PhaseId::Ready,
    ];

    /// The name on the wire (status file, node spec, `--stop-after`).
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseId::Mount => "mount",
            PhaseId::Cgroups => "cgroups",
            PhaseId::Identity => "identity",
            PhaseId::Kernel => "kernel",
            PhaseId::Modules => "modules",
            PhaseId::Sysctls => "sysctls",
            PhaseId::Network => "network",
            PhaseId::Containerd => "containerd",
            PhaseId::Images => "images",
            PhaseId::Kubernetes => "kubernetes",
            PhaseId::Ready => "ready",
        }
    }
}

impl fmt::Display for PhaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for PhaseId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// A name that is no boot phase; it says which ones are.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a boot phase (one of {})", phase_list())]
pub struct UnknownPhase {
    pub input: String,
}

fn phase_list() -> String {
    PhaseId::ALL.map(PhaseId::as_str).join(", ")
}

impl FromStr for PhaseId {
    type Err = UnknownPhase;

    fn from_str(s: &str) -> Result<Self, UnknownPhase> {
        PhaseId::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPhase {
                input: s.to_string(),
            })
    }
}

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
    /// A [`PhaseId`]'s name. Kept as text so that a host can read the
    /// status of a node whose kina-init knows a phase it does not.
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
    /// Whose CNI networks the node's pods; set by the network phase.
    #[serde(default, skip_serializing_if = "PodNetwork::is_kinas")]
    pub pod_network: PodNetwork,
}

/// Who gives the node's pods their network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PodNetwork {
    /// kina's ptp CNI, its routes to the other nodes' pods and its
    /// masquerading, set up at every boot.
    #[default]
    Kina,
    /// kind's `disableDefaultCNI`: kina set up none of that; the user's
    /// CNI is expected, and until it runs the node is NotReady.
    UserCni,
}

impl PodNetwork {
    fn is_kinas(&self) -> bool {
        *self == PodNetwork::Kina
    }

    /// What the status says about it, if anything: nothing for kina's own
    /// network; for the user's, whether it is still awaited (`ready`: the
    /// node's Ready condition, `None` without Kubernetes).
    pub fn describe(self, ready: Option<bool>) -> Option<&'static str> {
        match (self, ready) {
            (PodNetwork::Kina, _) => None,
            (PodNetwork::UserCni, Some(true)) => {
                Some("pod network: your CNI (disableDefaultCNI; kina installs none)")
            }
            (PodNetwork::UserCni, Some(false)) => Some(
                "pod network: a CNI is expected (disableDefaultCNI): kina installed none, and \
                 the node stays NotReady until you install one (e.g. Cilium, Calico)",
            ),
            (PodNetwork::UserCni, None) => Some(
                "pod network: a CNI is expected (disableDefaultCNI): kina wrote no CNI \
                 configuration and no routes to the other nodes' pods",
            ),
        }
    }
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
            phases: PhaseId::ALL
                .iter()
                .map(|p| PhaseStatus {
                    name: p.as_str().to_string(),
                    state: PhaseState::Pending,
                    duration_ms: 0,
                    message: String::new(),
                    hint: None,
                })
                .collect(),
            kubernetes: None,
            pod_network: PodNetwork::Kina,
        }
    }

    /// The record of a phase, named by its [`PhaseId`] or its name.
    pub fn phase(&self, name: impl AsRef<str>) -> Option<&PhaseStatus> {
        let name = name.as_ref();
        self.phases.iter().find(|p| p.name == name)
    }

    pub fn phase_mut(&mut self, name: impl AsRef<str>) -> Option<&mut PhaseStatus> {
        let name = name.as_ref();
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
        let ready = self.kubernetes.as_ref().map(|k| k.ready);
        if let Some(line) = self.pod_network.describe(ready) {
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_ids_keep_their_wire_names_in_serde_display_and_from_str() {
        let names = [
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
        assert_eq!(PhaseId::ALL.map(PhaseId::as_str), names);
        for (id, name) in PhaseId::ALL.into_iter().zip(names) {
            assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{name}\""));
            assert_eq!(
                serde_json::from_str::<PhaseId>(&format!("\"{name}\"")).unwrap(),
                id
            );
            assert_eq!(id.to_string(), name);
            assert_eq!(name.parse::<PhaseId>(), Ok(id));
        }
    }

    #[test]
    fn an_unknown_phase_is_named_with_the_valid_ones() {
        let err = "kubelet".parse::<PhaseId>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "`kubelet` is not a boot phase (one of mount, cgroups, identity, kernel, modules, sysctls, network, containerd, images, kubernetes, ready)"
        );
        assert!("Mount".parse::<PhaseId>().is_err());
    }

    #[test]
    fn a_node_waiting_for_the_users_cni_says_so_until_it_is_ready() {
        let mut status = NodeStatus::new("n1", "vm-pid1");
        assert!(!status.render().contains("pod network"));
        // kina's own network is not mentioned, nor written to the file.
        assert!(
            !serde_json::to_string(&status)
                .unwrap()
                .contains("pod_network")
        );
        status.pod_network = PodNetwork::UserCni;
        let json = serde_json::to_string(&status).unwrap();
        assert!(json.contains(r#""pod_network":"user-cni""#), "{json}");
        assert_eq!(serde_json::from_str::<NodeStatus>(&json).unwrap(), status);
        // Without Kubernetes (a base image).
        assert!(
            status
                .render()
                .contains("a CNI is expected (disableDefaultCNI): kina wrote no CNI configuration")
        );
        status.kubernetes = Some(KubernetesStatus::default());
        let text = status.render();
        assert!(text.contains("not Ready"), "{text}");
        assert!(
            text.contains("stays NotReady until you install one"),
            "{text}"
        );
        status.kubernetes.as_mut().unwrap().ready = true;
        let text = status.render();
        assert!(text.contains("pod network: your CNI"), "{text}");
        assert!(!text.contains("expected"), "{text}");
        // A status written before the field existed reads as kina's network.
        let old = r#"{"version":1,"node":"n","mode":"vm-pid1","phases":[]}"#;
        assert_eq!(
            serde_json::from_str::<NodeStatus>(old).unwrap().pod_network,
            PodNetwork::Kina
        );
    }

    #[test]
    fn a_new_status_has_one_pending_record_per_phase_in_order() {
        let status = NodeStatus::new("n1", "vm-pid1");
        let names: Vec<&str> = status.phases.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, PhaseId::ALL.map(PhaseId::as_str));
        assert!(status.phases.iter().all(|p| p.state == PhaseState::Pending));
        assert_eq!(
            status.phase(PhaseId::Network).map(|p| p.name.as_str()),
            Some("network")
        );
        assert_eq!(status.phase("network"), status.phase(PhaseId::Network));
    }
}
