//! Running kubeadm: `init` on the control plane, `join` (retried) on a
//! worker, with the kubelet started the moment kubeadm has configured it
//! and the admin kubeconfig published the moment the API server answers.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{Ipv4Addr, TcpStream, ToSocketAddrs};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use kina_contract::kubeadm::{self as kubeadm_config, Inputs, KubeVersion};
use kina_contract::node_spec::KubernetesSettings;

use super::kubectl::Kubectl;
use super::kubelet::kubelet_args;
use super::preflight::{ignored_checks, kernel_config_found, node_resources};
use super::{KubernetesPhase, Progress, Tools, failure, files, leftovers};
use crate::boot::{BootContext, PhaseFailure};
use crate::children;
use crate::supervise::ServiceSpec;

/// Between join attempts: the control plane may be mid-init (its API
/// server answers before the bootstrap token exists).
const JOIN_RETRY_PAUSE: Duration = Duration::from_secs(3);

/// Between join attempts when kubeadm refused because a Ready Node of this
/// name exists (its kubelet-start phase checks, cmd/kubeadm/app/cmd/phases/
/// join/kubelet.go): the failed attempt's kubelet registered it, and it
/// stays Ready until kube-controller-manager has heard nothing from it for
/// the node-monitor grace period (40 s; 50 s from 1.32, kubernetes PR
/// #126287) plus a node-monitor period (5 s).
const NODE_STILL_READY_PAUSE: Duration = Duration::from_secs(60);

/// How long to wait before the next join, given why the last one failed.
pub(super) fn join_retry_pause(reason: &str) -> Duration {
    if reason.contains("already exists in the cluster") && reason.contains("\"Ready\"") {
        NODE_STILL_READY_PAUSE
    } else {
        JOIN_RETRY_PAUSE
    }
}

/// Writes `bytes` to `path` readable by root only, replacing it atomically.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    files::replace(path, bytes, 0o600)
}

/// The last `n` lines of a log, for an error message.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Opens kubeadm's log for appending, as its stdout and its stderr.
/// kubeadm's output names the cluster's endpoints and files, so the log is
/// root's to read, like the configuration it came from.
fn open_log(path: &Path) -> Result<(File, File), PhaseFailure> {
    let hint = "the node's /var/log must be writable";
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| failure(format!("creating {}: {e}", dir.display()), hint))?;
    }
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| failure(format!("opening {}: {e}", path.display()), hint))?;
    let err = out
        .try_clone()
        .map_err(|e| failure(format!("duplicating {}: {e}", path.display()), hint))?;
    Ok((out, err))
}

impl KubernetesPhase {
    pub(super) fn start_kubelet(&self, kubelet: &Path) -> Result<(), PhaseFailure> {
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

    /// Publishes the admin kubeconfig once it works: the API server answers
    /// and kubeadm's `kubeadm:cluster-admins` binding exists, so the user
    /// never gets a kubeconfig that is refused with 403.
    pub(super) fn publish_when_answering(
        &self,
        admin: &Kubectl,
        ctx: &BootContext,
        progress: &mut Progress,
    ) -> bool {
        if !progress.kubeconfig_published && admin.admin_authorized() {
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
    pub(super) fn run_kubeadm(
        &self,
        kubeadm: &Path,
        args: &[String],
        deadline: Instant,
        mut tick: impl FnMut() -> Result<(), PhaseFailure>,
    ) -> Result<(), PhaseFailure> {
        let log_path = self.log("kubeadm.log");
        let (mut out, err) = open_log(&log_path)?;
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

    pub(super) fn write_ca(&self, k: &KubernetesSettings) -> Result<(), PhaseFailure> {
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
    pub(super) fn wait_for_endpoint(
        &self,
        endpoint: &str,
        deadline: Instant,
    ) -> Result<(), PhaseFailure> {
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
    pub(super) fn write_kubeadm_config(
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
    pub(super) fn start_kubelet_when_configured(
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

    pub(super) fn init(
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
            // Serving certificates are approved from the moment admin.conf
            // works, not after init returns: until then no kubelet serves
            // logs or exec.
            if self.publish_when_answering(admin, ctx, progress) {
                self.start_controller_once(admin, ctx, progress)?;
            }
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

    /// Before the first init or join: what an earlier attempt that failed or
    /// was cut short left is reset away (see [`leftovers`]), so kubeadm's
    /// preflight passes and the kubelet does not start from stale files.
    pub(super) fn reset_leftovers(
        &self,
        tools: &Tools,
        deadline: Instant,
    ) -> Result<(), PhaseFailure> {
        let found = leftovers::found(&self.paths);
        if found.is_empty() {
            return Ok(());
        }
        eprintln!(
            "kina-init: an earlier kubeadm run that did not finish left {}; resetting before trying again",
            found
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let reset = ["reset".to_string(), "--force".into()];
        if let Err(e) = self.run_kubeadm(&tools.kubeadm, &reset, deadline, || Ok(())) {
            eprintln!(
                "kina-init: kubeadm reset: {} (kina-init clears its files itself)",
                e.message
            );
        }
        leftovers::clear(&self.paths).map_err(|e| {
            failure(
                format!("clearing what the earlier kubeadm run left: {e}"),
                "the node's /etc/kubernetes and /var/lib must be writable; `kina node exec` in and remove the file named, or recreate the node",
            )
        })
    }

    /// `kubeadm join`, retried after `kubeadm reset` until it succeeds or
    /// the deadline leaves no room for another attempt.
    pub(super) fn join(
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
            let pause = joined
                .as_ref()
                .err()
                .map_or(JOIN_RETRY_PAUSE, |f| join_retry_pause(&f.message));
            match joined {
                Ok(()) => return Ok(()),
                Err(f) if time_left > pause + JOIN_RETRY_PAUSE => {
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
                    if pause > JOIN_RETRY_PAUSE {
                        eprintln!(
                            "kina-init: this node's Node object is still Ready from the failed attempt; waiting {} s for the control plane to see it gone",
                            pause.as_secs()
                        );
                    }
                    std::thread::sleep(pause);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_join_refused_over_a_ready_node_waits_out_the_grace_period() {
        // kubeadm's message (cmd/kubeadm/app/cmd/phases/join/kubelet.go).
        let refused = "kubeadm join failed (exit status: 1); it said:\nerror execution phase kubelet-start: a Node with name \"kina-worker\" and status \"Ready\" already exists in the cluster. You must delete the existing Node or change the name of this new joining Node";
        assert_eq!(join_retry_pause(refused), NODE_STILL_READY_PAUSE);
        assert_eq!(
            join_retry_pause(
                "error execution phase preflight: couldn't validate the identity of the API Server"
            ),
            JOIN_RETRY_PAUSE
        );
    }
}
