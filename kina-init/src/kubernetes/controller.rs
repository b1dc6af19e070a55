//! What the control plane's kina-init does for the whole life of the
//! cluster: approve the kubelet serving certificates that pass
//! [`csr_policy`], label workers by role, and keep this node's readiness in
//! the status file. Every 3 s while there is work, up to every 30 s once it
//! is quiet (a request is approved at most that late).
//!
//! The cluster's nodes are read from the node spec each round, so a spec the
//! host rewrites (a node came back with another address) is honoured at
//! once.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use kina_contract::node_spec::NodeSpec;
use serde_json::Value;

use super::csr_policy::{ClusterNode, Decision, KUBELET_SERVING_SIGNER, decide, parse_csr_list};
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

const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";
const WORKER_LABEL: &str = "node-role.kubernetes.io/worker";

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
        }
    }

    /// Runs rounds forever on a thread of its own: every few seconds while
    /// there is something to do (nodes joining, requests to approve), and
    /// less often once a round finds nothing, since each round starts
    /// kubectl twice and under TCG that costs a node real CPU time.
    pub fn spawn(mut self) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("kubernetes-controller".into())
            .spawn(move || {
                let mut interval = BUSY_INTERVAL;
                loop {
                    let said = self.round();
                    for line in &said {
                        eprintln!("kina-init: {line}");
                    }
                    interval = next_interval(interval, !said.is_empty());
                    std::thread::sleep(interval);
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

    /// One round; returns what is worth a console line.
    pub fn round(&mut self) -> Vec<String> {
        let spec = self.current_spec();
        let nodes = self.cluster_nodes(&spec);
        let mut said = Vec::new();
        match self.kubectl.run(&["get", "csr", "-o", "json"]) {
            Ok(bytes) => match parse_csr_list(&bytes) {
                Ok(csrs) => {
                    for csr in csrs.iter().filter(|c| !c.decided) {
                        match decide(csr, &nodes, SystemTime::now()) {
                            Decision::Approve => {
                                match self.kubectl.run(&["certificate", "approve", &csr.name]) {
                                    Ok(_) => said.push(format!(
                                        "approved kubelet serving certificate request {} of {}",
                                        csr.name, csr.username
                                    )),
                                    Err(e) => said.push(format!("approving {}: {e}", csr.name)),
                                }
                            }
                            // Other signers are the controller manager's
                            // business; say nothing of them.
                            Decision::Refuse(_) if csr.signer_name != KUBELET_SERVING_SIGNER => {}
                            Decision::Refuse(reason) => {
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
                Err(e) => said.push(format!("reading certificate requests: {e}")),
            },
            Err(e) => said.push(format!("listing certificate requests: {e}")),
        }
        match self.kubectl.json(&["get", "nodes"]) {
            Ok(list) => {
                let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
                let mut cidrs = vec![(spec.name.as_str(), spec.pod_cidr.as_str())];
                cidrs.extend(
                    spec.peers
                        .iter()
                        .map(|p| (p.name.as_str(), p.pod_cidr.as_str())),
                );
                for (name, cidr) in missing_pod_cidrs(&list, &cidrs) {
                    let patch = serde_json::json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})
                        .to_string();
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
                let own = &self.spec.name;
                let ready = list["items"].as_array().is_some_and(|items| {
                    items.iter().any(|n| {
                        n["metadata"]["name"] == own.as_str()
                            && super::kubectl::condition_true(n, "Ready")
                    })
                });
                let _ = self.status.update(|s| {
                    if let Some(k) = &mut s.kubernetes {
                        k.ready = ready;
                    }
                });
            }
            Err(e) => said.push(format!("listing nodes: {e}")),
        }
        said
    }
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
