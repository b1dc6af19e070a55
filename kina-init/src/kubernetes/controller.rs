//! What the control plane's kina-init does for the whole life of the
//! cluster: approve the kubelet serving certificates that pass
//! [`csr_policy`], label workers by role, keep the cluster's join token
//! valid ([`join_token`]), take a one-node cluster's only node back into
//! load balancing, and keep this node's readiness in the status file.
//!
//! It starts as soon as the API server lets admin.conf in, while `kubeadm
//! init` is still running, because every kubelet runs without a serving
//! certificate (`kubectl logs`/`exec` fail) until its request is approved.
//! Rounds come every 3 s while there is work or a kubelet serving request
//! waits, and slow to every 30 s once it is quiet.
//!
//! The cluster's nodes are read from the node spec each round, so a spec the
//! host rewrites (a node came back with another address) is honoured at
//! once.
//!
//! [`join_token`]: super::join_token

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use kina_contract::node_spec::NodeSpec;
use serde_json::Value;

use super::csr_policy::{
    ClusterNode, Csr, Decision, KUBELET_SERVING_SIGNER, decide, parse_csr_list,
};
use super::join_token::{self, JoinToken, Renewal};
use super::kubectl::Kubectl;
use crate::boot::StatusFile;

/// Between rounds while they find work, and at most once nothing happens.
const BUSY_INTERVAL: Duration = Duration::from_secs(3);
const IDLE_INTERVAL: Duration = Duration::from_secs(30);

/// Back to the busy interval after a round that did something; doubling
/// towards the idle one after a quiet round.
fn next_interval(current: Duration, busy: bool) -> Duration {
    if busy {
        BUSY_INTERVAL
    } else {
        (current * 2).min(IDLE_INTERVAL)
    }
}

/// How long a kubelet waits for its certificate request before it gives up
/// on it and makes a new one (client-go `util/certificate/
/// certificate_manager.go`, `certificateWaitTimeout`); a pending request
/// older than that keeps no one waiting, so it does not keep rounds fast.
const KUBELET_WAITS: Duration = Duration::from_secs(15 * 60);

/// Between looks at the join token; it is renewed with half a day to spare.
const TOKEN_INTERVAL: Duration = Duration::from_secs(10 * 60);

const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";
const WORKER_LABEL: &str = "node-role.kubernetes.io/worker";
/// kubeadm puts it on every control plane; on a one-node cluster it would
/// keep LoadBalancer implementations (MetalLB, cloud-provider-kind) off the
/// only node, so kind removes it there (kind `pkg/cluster/internal/create/
/// actions/kubeadminit/init.go`) and so does kina.
pub const EXCLUDE_LB_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// What one round found.
#[derive(Debug, Default)]
pub struct Round {
    /// What is worth a console line.
    pub said: Vec<String>,
    /// A kubelet is waiting for its serving certificate request.
    pub csr_waiting: bool,
}

impl Round {
    fn busy(&self) -> bool {
        self.csr_waiting || !self.said.is_empty()
    }
}

/// A kubelet serving request that is still undecided and young enough that
/// its kubelet still waits for it.
fn kubelet_waits_on(csr: &Csr, now: SystemTime) -> bool {
    !csr.decided
        && csr.signer_name == KUBELET_SERVING_SIGNER
        && now
            .duration_since(csr.created)
            .map_or(true, |age| age < KUBELET_WAITS)
}

pub struct Controller {
    pub kubectl: Kubectl,
    pub spec_path: PathBuf,
    /// The spec the boot started with, for rounds where the file cannot be
    /// read.
    pub spec: NodeSpec,
    pub uplink: String,
    pub status: StatusFile,
    /// CSRs already reported as left pending, so each is logged once.
    refused: HashSet<String>,
    /// Set to end the controller's thread (tests; a node never stops it).
    pub stop: Arc<AtomicBool>,
    /// When the join token is looked at next.
    next_token_check: Instant,
    /// The one-node cluster's load-balancer label was removed (once, as
    /// kind does at creation: a user who puts it back keeps it).
    lb_label_dropped: bool,
}

impl Controller {
    pub fn new(
        kubectl: Kubectl,
        spec_path: PathBuf,
        spec: NodeSpec,
        uplink: String,
        status: StatusFile,
    ) -> Self {
        Self {
            kubectl,
            spec_path,
            spec,
            uplink,
            status,
            refused: HashSet::new(),
            stop: Arc::new(AtomicBool::new(false)),
            next_token_check: Instant::now(),
            lb_label_dropped: false,
        }
    }

    /// Runs rounds on a thread of its own until `stop` is set: every few
    /// seconds while there is something to do (nodes joining, requests to
    /// approve or waiting), and less often once a round finds nothing, since
    /// each round starts kubectl twice and under TCG that costs a node real
    /// CPU time.
    pub fn spawn(mut self) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("kubernetes-controller".into())
            .spawn(move || {
                let mut interval = BUSY_INTERVAL;
                while !self.stop.load(Ordering::Relaxed) {
                    let round = self.round();
                    for line in &round.said {
                        eprintln!("kina-init: {line}");
                    }
                    interval = next_interval(interval, round.busy());
                    let wake = Instant::now() + interval;
                    while Instant::now() < wake && !self.stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(100).min(interval));
                    }
                }
            })
    }

    /// The spec as the host last wrote it (the one booted with if it
    /// cannot be read).
    fn current_spec(&self) -> NodeSpec {
        std::fs::read(&self.spec_path)
            .ok()
            .and_then(|b| NodeSpec::from_json(&b, &self.spec_path.display().to_string()).ok())
            .unwrap_or_else(|| self.spec.clone())
    }

    /// The cluster's nodes as the spec names them, this one at its current
    /// address.
    fn cluster_nodes(&self, spec: &NodeSpec) -> Vec<ClusterNode> {
        let mut own = Vec::new();
        if let Ok(ip) = crate::boot::network::uplink_ipv4(&self.uplink) {
            own.push(IpAddr::V4(ip));
        }
        let mut nodes = vec![ClusterNode {
            name: spec.name.clone(),
            addresses: own,
        }];
        nodes.extend(spec.peers.iter().map(|p| ClusterNode {
            name: p.name.clone(),
            addresses: p.address.parse().into_iter().collect(),
        }));
        nodes
    }

    /// One round.
    pub fn round(&mut self) -> Round {
        let spec = self.current_spec();
        let nodes = self.cluster_nodes(&spec);
        let mut round = Round::default();
        self.approve(&nodes, &mut round);
        self.tend_nodes(&spec, &nodes, &mut round.said);
        if Instant::now() >= self.next_token_check {
            self.renew_token(&spec, &mut round.said);
        }
        round
    }

    /// Approves the kubelet serving requests the policy allows.
    fn approve(&mut self, nodes: &[ClusterNode], round: &mut Round) {
        let said = &mut round.said;
        let csrs = match self.kubectl.run(&["get", "csr", "-o", "json"]) {
            Ok(bytes) => match parse_csr_list(&bytes) {
                Ok(csrs) => csrs,
                Err(e) => {
                    said.push(format!("reading certificate requests: {e}"));
                    return;
                }
            },
            Err(e) => {
                said.push(format!("listing certificate requests: {e}"));
                return;
            }
        };
        let now = SystemTime::now();
        for csr in csrs.iter().filter(|c| !c.decided) {
            match decide(csr, nodes, now) {
                Decision::Approve => {
                    match self.kubectl.run(&["certificate", "approve", &csr.name]) {
                        Ok(_) => said.push(format!(
                            "approved kubelet serving certificate request {} of {}",
                            csr.name, csr.username
                        )),
                        Err(e) => said.push(format!("approving {}: {e}", csr.name)),
                    }
                }
                // Other signers are the controller manager's business; say
                // nothing of them.
                Decision::Refuse(_) if csr.signer_name != KUBELET_SERVING_SIGNER => {}
                Decision::Refuse(reason) => {
                    // Left pending: the host may yet rewrite the spec with
                    // the node's new address, so keep looking while its
                    // kubelet waits.
                    round.csr_waiting |= kubelet_waits_on(csr, now);
                    if self.refused.insert(csr.name.clone()) {
                        said.push(format!(
                            "left certificate request {} of {} pending: {reason}",
                            csr.name, csr.username
                        ));
                    }
                }
            }
        }
    }

    /// Pod CIDRs, worker labels, the one-node cluster's load-balancer label
    /// and this node's readiness in the status.
    fn tend_nodes(&mut self, spec: &NodeSpec, nodes: &[ClusterNode], said: &mut Vec<String>) {
        let list = match self.kubectl.json(&["get", "nodes"]) {
            Ok(list) => list,
            Err(e) => {
                said.push(format!("listing nodes: {e}"));
                return;
            }
        };
        let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        let mut cidrs = vec![(spec.name.as_str(), spec.pod_cidr.as_str())];
        cidrs.extend(
            spec.peers
                .iter()
                .map(|p| (p.name.as_str(), p.pod_cidr.as_str())),
        );
        for (name, cidr) in missing_pod_cidrs(&list, &cidrs) {
            let patch =
                serde_json::json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}}).to_string();
            match self
                .kubectl
                .run(&["patch", "node", &name, "--type", "merge", "-p", &patch])
            {
                Ok(_) => said.push(format!("set node {name}'s pod CIDR to {cidr}")),
                Err(e) => said.push(format!("setting node {name}'s pod CIDR: {e}")),
            }
        }
        for name in unlabelled_workers(&list, &names) {
            let label = format!("{WORKER_LABEL}=");
            match self
                .kubectl
                .run(&["label", "node", &name, &label, "--overwrite"])
            {
                Ok(_) => said.push(format!("labelled node {name} as a worker")),
                Err(e) => said.push(format!("labelling node {name}: {e}")),
            }
        }
        let own = self.spec.name.clone();
        if !self.lb_label_dropped
            && spec.peers.is_empty()
            && has_label(&list, &own, EXCLUDE_LB_LABEL)
        {
            let unset = format!("{EXCLUDE_LB_LABEL}-");
            match self.kubectl.run(&["label", "node", &own, &unset]) {
                Ok(_) => {
                    self.lb_label_dropped = true;
                    said.push(format!(
                        "removed {EXCLUDE_LB_LABEL} from {own}, the cluster's only node"
                    ));
                }
                Err(e) => said.push(format!("removing {EXCLUDE_LB_LABEL} from {own}: {e}")),
            }
        }
        let ready = list["items"].as_array().is_some_and(|items| {
            items.iter().any(|n| {
                n["metadata"]["name"] == own.as_str() && super::kubectl::condition_true(n, "Ready")
            })
        });
        let _ = self.status.update(|s| {
            if let Some(k) = &mut s.kubernetes {
                k.ready = ready;
            }
        });
    }

    /// Moves the join token's expiration forward, or recreates its Secret.
    fn renew_token(&mut self, spec: &NodeSpec, said: &mut Vec<String>) {
        let Some(token) = spec
            .kubernetes
            .as_ref()
            .and_then(|k| k.bootstrap_token.as_ref())
        else {
            self.next_token_check = Instant::now() + TOKEN_INTERVAL;
            return;
        };
        let token = match JoinToken::parse(token.expose()) {
            Ok(t) => t,
            Err(e) => {
                self.next_token_check = Instant::now() + TOKEN_INTERVAL;
                said.push(e);
                return;
            }
        };
        let name = token.secret_name();
        let outcome = self
            .kubectl
            .run(&[
                "-n",
                "kube-system",
                "get",
                "secret",
                &name,
                "--ignore-not-found",
                "-o",
                "json",
            ])
            .and_then(|bytes| {
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    return Ok(None);
                }
                serde_json::from_slice::<Value>(&bytes)
                    .map(Some)
                    .map_err(|e| format!("secret {name}: not JSON: {e}"))
            })
            .and_then(|existing| {
                join_token::renewal(
                    existing.as_ref(),
                    &token,
                    &spec.cluster,
                    time::OffsetDateTime::now_utc(),
                )
            })
            .and_then(|renewal| self.apply_renewal(&name, renewal));
        match outcome {
            Ok(Some(line)) => said.push(line),
            Ok(None) => {}
            // Try again soon: a join may be waiting for this token.
            Err(e) => {
                said.push(format!("keeping the join token valid: {e}"));
                return;
            }
        }
        self.next_token_check = Instant::now() + TOKEN_INTERVAL;
    }

    fn apply_renewal(&self, name: &str, renewal: Renewal) -> Result<Option<String>, String> {
        match renewal {
            Renewal::Keep => Ok(None),
            Renewal::Extend { patch } => {
                let patch = patch.to_string();
                self.kubectl.run(&[
                    "-n",
                    "kube-system",
                    "patch",
                    "secret",
                    name,
                    "--type",
                    "merge",
                    "-p",
                    &patch,
                ])?;
                Ok(Some(format!(
                    "moved the join token's expiration {} h ahead",
                    join_token::TTL.as_secs() / 3600
                )))
            }
            Renewal::Create { secret } => {
                self.kubectl
                    .run_with_input(&["create", "-f", "-"], secret.to_string().as_bytes())?;
                Ok(Some(format!(
                    "recreated the join token's Secret {name} (it had expired or been deleted)"
                )))
            }
        }
    }
}

/// Whether node `name` in the list has label `label`.
pub fn has_label(node_list: &Value, name: &str, label: &str) -> bool {
    node_list["items"].as_array().is_some_and(|items| {
        items
            .iter()
            .any(|n| n["metadata"]["name"] == name && n["metadata"]["labels"].get(label).is_some())
    })
}

/// Nodes of this cluster whose Node object has no pod CIDR yet, with the
/// one their spec gives them. (Set once: the API server refuses to change
/// a pod CIDR, so a node that has another one keeps it.)
pub fn missing_pod_cidrs(node_list: &Value, cidrs: &[(&str, &str)]) -> Vec<(String, String)> {
    node_list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|n| {
                    let name = n["metadata"]["name"].as_str()?;
                    let (_, cidr) = cidrs.iter().find(|(node, _)| *node == name)?;
                    let has = n["spec"]["podCIDR"].as_str().is_some_and(|c| !c.is_empty());
                    (!has && !cidr.is_empty()).then(|| (name.to_string(), cidr.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Nodes of this cluster that have neither role label; kubeadm labels
/// control planes, and a kubelet may not set `node-role` labels itself.
pub fn unlabelled_workers(node_list: &Value, cluster: &[&str]) -> Vec<String> {
    node_list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|n| {
                    let name = n["metadata"]["name"].as_str()?;
                    let labels = &n["metadata"]["labels"];
                    let labelled = labels.get(CONTROL_PLANE_LABEL).is_some()
                        || labels.get(WORKER_LABEL).is_some();
                    (cluster.contains(&name) && !labelled).then(|| name.to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quiet_rounds_slow_down_and_work_speeds_up() {
        let mut i = BUSY_INTERVAL;
        let mut seen = vec![];
        for _ in 0..5 {
            i = next_interval(i, false);
            seen.push(i.as_secs());
        }
        assert_eq!(seen, [6, 12, 24, 30, 30]);
        assert_eq!(next_interval(i, true), BUSY_INTERVAL);
    }

    fn csr(signer: &str, decided: bool, age: Duration) -> Csr {
        Csr {
            name: "csr-1".into(),
            signer_name: signer.into(),
            username: "system:node:kina-worker".into(),
            groups: vec![],
            usages: vec![],
            request_pem: vec![],
            created: SystemTime::now() - age,
            decided,
        }
    }

    #[test]
    fn rounds_stay_fast_while_a_kubelet_waits_for_its_serving_certificate() {
        let now = SystemTime::now();
        let minute = Duration::from_secs(60);
        assert!(kubelet_waits_on(
            &csr(KUBELET_SERVING_SIGNER, false, minute),
            now
        ));
        // Decided, another signer's, or older than the kubelet waits: no.
        assert!(!kubelet_waits_on(
            &csr(KUBELET_SERVING_SIGNER, true, minute),
            now
        ));
        assert!(!kubelet_waits_on(
            &csr("kubernetes.io/kube-apiserver-client-kubelet", false, minute),
            now
        ));
        assert!(!kubelet_waits_on(
            &csr(KUBELET_SERVING_SIGNER, false, 16 * minute),
            now
        ));
        let waiting = Round {
            said: vec![],
            csr_waiting: true,
        };
        assert!(waiting.busy());
        assert!(!Round::default().busy());
    }

    #[test]
    fn the_load_balancer_label_is_found_on_the_named_node_only() {
        let list = json!({"items": [
            {"metadata": {"name": "kina-control-plane", "labels": {EXCLUDE_LB_LABEL: "", CONTROL_PLANE_LABEL: ""}}},
            {"metadata": {"name": "other", "labels": {}}},
        ]});
        assert!(has_label(&list, "kina-control-plane", EXCLUDE_LB_LABEL));
        assert!(!has_label(&list, "other", EXCLUDE_LB_LABEL));
        assert!(!has_label(
            &json!({}),
            "kina-control-plane",
            EXCLUDE_LB_LABEL
        ));
    }

    #[test]
    fn nodes_without_a_pod_cidr_get_their_specs_and_others_are_left_alone() {
        let list = json!({"items": [
            {"metadata": {"name": "kina-control-plane"}, "spec": {"podCIDR": "10.244.0.0/24"}},
            {"metadata": {"name": "kina-worker"}, "spec": {}},
            {"metadata": {"name": "kina-worker2"}, "spec": {"podCIDR": ""}},
            {"metadata": {"name": "stranger"}, "spec": {}},
        ]});
        let cidrs = [
            ("kina-control-plane", "10.244.0.0/24"),
            ("kina-worker", "10.244.1.0/24"),
            ("kina-worker2", "10.244.2.0/24"),
        ];
        assert_eq!(
            missing_pod_cidrs(&list, &cidrs),
            [
                ("kina-worker".to_string(), "10.244.1.0/24".to_string()),
                ("kina-worker2".to_string(), "10.244.2.0/24".to_string()),
            ]
        );
    }

    #[test]
    fn only_this_clusters_unlabelled_nodes_become_workers() {
        let list = json!({"items": [
            {"metadata": {"name": "kina-control-plane", "labels": {CONTROL_PLANE_LABEL: ""}}},
            {"metadata": {"name": "kina-worker", "labels": {"kubernetes.io/os": "linux"}}},
            {"metadata": {"name": "kina-worker2", "labels": {WORKER_LABEL: ""}}},
            {"metadata": {"name": "stranger", "labels": {}}},
        ]});
        let cluster = ["kina-control-plane", "kina-worker", "kina-worker2"];
        assert_eq!(unlabelled_workers(&list, &cluster), ["kina-worker"]);
    }
}
