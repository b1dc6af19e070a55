//! The Kubernetes API as kina-init uses it: through the node image's own
//! kubectl with one of kubeadm's kubeconfigs. A handful of reads every few
//! seconds and a rare write (approve, label, patch) do not justify a
//! Kubernetes client and TLS stack inside PID 1, and kubectl speaks whatever
//! the cluster's version needs.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::children;

#[derive(Clone, Debug)]
pub struct Kubectl {
    pub program: PathBuf,
    pub kubeconfig: PathBuf,
}

/// kubeadm's ClusterRoleBinding that makes admin.conf's group
/// (`kubeadm:cluster-admins`, 1.29+) cluster-admin.
pub const CLUSTER_ADMINS_BINDING: &str = "kubeadm:cluster-admins";

impl Kubectl {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg("--request-timeout=10s")
            .args(args);
        cmd
    }

    /// Runs kubectl; stdout on success, else what it said on stderr.
    pub fn run(&self, args: &[&str]) -> Result<Vec<u8>, String> {
        let out = children::output(&mut self.command(args))
            .map_err(|e| format!("running {}: {e}", self.program.display()))?;
        Self::outcome(args, out)
    }

    /// `run` with `input` on kubectl's stdin (`-f -`): for objects that hold
    /// secrets, which would show in the process list as arguments.
    pub fn run_with_input(&self, args: &[&str], input: &[u8]) -> Result<Vec<u8>, String> {
        let out = children::output_with_input(&mut self.command(args), input)
            .map_err(|e| format!("running {}: {e}", self.program.display()))?;
        Self::outcome(args, out)
    }

    fn outcome(args: &[&str], out: std::process::Output) -> Result<Vec<u8>, String> {
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

    /// The API server answers and this kubeconfig's credentials may read
    /// kubeadm's `kubeadm:cluster-admins` binding. With admin.conf that is
    /// true only once kubeadm has created the binding (`kubeadm init` does it
    /// after the API server is up, in `initData.Client()`, cmd/kubeadm/app/
    /// cmd/init.go, through `EnsureAdminClusterRoleBinding`); before, every
    /// request with admin.conf is refused with 403.
    pub fn admin_authorized(&self) -> bool {
        self.kubeconfig.is_file()
            && self
                .run(&[
                    "get",
                    "clusterrolebinding",
                    CLUSTER_ADMINS_BINDING,
                    "-o",
                    "name",
                ])
                .is_ok()
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
