//! The Kubernetes API as kina-init uses it: through the node image's own
//! kubectl with one of kubeadm's kubeconfigs. A handful of reads and two
//! writes (approve, label) every few seconds do not justify a Kubernetes
//! client and TLS stack inside PID 1, and kubectl speaks whatever the
//! cluster's version needs.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::children;

#[derive(Clone, Debug)]
pub struct Kubectl {
    pub program: PathBuf,
    pub kubeconfig: PathBuf,
}

impl Kubectl {
    /// Runs kubectl; stdout on success, else what it said on stderr.
    pub fn run(&self, args: &[&str]) -> Result<Vec<u8>, String> {
        let out = children::output(
            Command::new(&self.program)
                .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
                .arg("--request-timeout=10s")
                .args(args),
        )
        .map_err(|e| format!("running {}: {e}", self.program.display()))?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(format!(
                "kubectl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    pub fn json(&self, args: &[&str]) -> Result<Value, String> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let bytes = self.run(&all)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| format!("kubectl {}: output is not JSON: {e}", args.join(" ")))
    }

    /// The API server answers its liveness endpoint.
    pub fn api_answers(&self) -> bool {
        self.kubeconfig.is_file() && self.run(&["get", "--raw", "/livez"]).is_ok()
    }

    /// The node's `Ready` condition is `True`. A node's own credentials may
    /// read its own Node object (and, from 1.34, only that one).
    pub fn node_ready(&self, name: &str) -> Result<bool, String> {
        let node = self.json(&["get", "node", name])?;
        Ok(condition_true(&node, "Ready"))
    }

    /// CoreDNS has an available replica.
    pub fn coredns_available(&self) -> Result<bool, String> {
        let deployment = self.json(&["-n", "kube-system", "get", "deployment", "coredns"])?;
        Ok(deployment["status"]["availableReplicas"]
            .as_u64()
            .is_some_and(|n| n > 0))
    }
}

pub fn condition_true(object: &Value, kind: &str) -> bool {
    object["status"]["conditions"]
        .as_array()
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c["type"] == kind && c["status"] == "True")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn readiness_is_read_from_the_conditions() {
        let ready = json!({"status": {"conditions": [
            {"type": "MemoryPressure", "status": "False"},
            {"type": "Ready", "status": "True"}]}});
        let not_ready = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}});
        assert!(condition_true(&ready, "Ready"));
        assert!(!condition_true(&not_ready, "Ready"));
        assert!(!condition_true(&json!({}), "Ready"));
    }
}
