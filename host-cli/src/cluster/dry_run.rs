//! `kina up --dry-run`: what each node's kina-init would hand kubeadm,
//! made by the same plan and node specs `up` makes and the same contract
//! code kina-init runs (`kina_contract::kubeadm`, `containerd_config`), so users can debug their
//! kind patches without a VM. Nothing is created: no provider runs
//! anything (only its pure planning, `shape` and `node_interfaces`), no
//! file or record is written, no port is bound, no image is loaded.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use kina_contract::containerd_config;
use kina_contract::kubeadm::{self, Inputs, KubeVersion};
use kina_contract::node_spec::{Role, Secret};

use super::plan::{self, Addressing, PlanInputs};
use super::record::{self, ClusterDir};
use crate::cluster_config::ClusterConfig;
use crate::cluster_secrets::ClusterSecrets;
use crate::dirs::KinaDirs;
use crate::provider::Provider;

/// kubeadm's own example token (its docs), a valid token no cluster of
/// kina's has: `up` makes a random one.
pub const PLACEHOLDER_TOKEN: &str = "abcdef.0123456789abcdef";
/// A well-formed CA pin of no CA: `up` pins the cluster's own.
pub const PLACEHOLDER_CA_HASH: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// The containerd line kina's Kubernetes recipes install (upstream 2.x;
/// Debian's 1.7 is only in the base recipe, which has no kubeadm to show).
/// The image records no containerd version, so the dry run assumes this one
/// and its section title says so.
const ASSUMED_CONTAINERD_MAJOR: u32 = 2;

/// What `up --dry-run` was asked for.
pub struct DryRunRequest<'a> {
    pub name: String,
    pub config: &'a ClusterConfig,
    pub image: String,
    pub kubernetes_version: KubeVersion,
    /// Where the version came from, for the header ("the image's label",
    /// "--kubernetes-version").
    pub version_source: String,
    /// What relative `extraMounts` paths are relative to.
    pub cwd: PathBuf,
}

/// One block of a node's output: a title and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    pub title: String,
    pub body: String,
}

/// One node's output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeOutput {
    pub name: String,
    pub role: Role,
    pub node_ip: Ipv4Addr,
    pub notes: Vec<String>,
    pub sections: Vec<Section>,
}

/// Everything `up --dry-run` prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DryRun {
    pub header: Vec<String>,
    pub nodes: Vec<NodeOutput>,
}

/// A `--kubernetes-version` as users write it: `1.35`, `v1.35` or a full
/// release `v1.35.2`; the bool says whether the patch release was given.
pub fn parse_kubernetes_version(text: &str) -> anyhow::Result<(KubeVersion, bool)> {
    let t = text.trim();
    if let Ok(v) = KubeVersion::parse(t) {
        return Ok((v, true));
    }
    let core = t.strip_prefix('v').unwrap_or(t);
    let minor = core
        .split_once('.')
        .and_then(|(major, minor)| Some((major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?)));
    match minor {
        Some((major, minor)) => Ok((
            KubeVersion {
                major,
                minor,
                patch: 0,
            },
            false,
        )),
        None => bail!(
            "--kubernetes-version {t}: write a Kubernetes minor such as 1.35, or a release such as v1.35.2"
        ),
    }
}

/// The address a node's documents are shown with when the provider hands
/// addresses out only at start (Apple): TEST-NET-1 (RFC 5737), which no
/// real node has.
fn documentation_address(index: usize) -> Ipv4Addr {
    let host = u8::try_from(index + 2).unwrap_or(u8::MAX);
    Ipv4Addr::new(192, 0, 2, host)
}

/// Makes what `up` would hand each node's kubeadm, refusing what `up`
/// would refuse (a config the provider cannot honour, a patch kubeadm could
/// not decode), naming it.
pub fn dry_run<P: Provider>(
    provider: &P,
    dirs: &KinaDirs,
    request: &DryRunRequest,
) -> anyhow::Result<DryRun> {
    let name = &request.name;
    super::up::check_creatable(provider, name, request.config)?;
    let version = request.kubernetes_version;
    let version_text = version.to_string();
    // The API server's host port is not in any kubeadm document, so none
    // is looked for (that would bind a socket).
    let no_port = |_: plan::Protocol, _: Ipv4Addr| Ok(0);
    let mut plan = plan::plan(&PlanInputs {
        provider: provider.kind(),
        config: request.config,
        name,
        image: &request.image,
        kubernetes_version: Some(&version_text),
        stop_after: None,
        cwd: &request.cwd,
        free_port: &no_port,
    })?;
    provider.shape(&mut plan, &record::all(dirs))?;
    let secrets = ClusterSecrets {
        ca_cert_pem: String::new(),
        ca_key_pem: Secret::new(String::new()),
        ca_cert_hash: PLACEHOLDER_CA_HASH.to_string(),
        bootstrap_token: Secret::new(PLACEHOLDER_TOKEN),
    };

    let mut header = vec![
        format!(
            "kina up --dry-run: cluster \"{name}\" on {}, Kubernetes {version} ({}); nothing was created.",
            provider.kind().label(),
            request.version_source
        ),
        format!(
            "The bootstrap token ({PLACEHOLDER_TOKEN}) and CA hash are placeholders: `kina up` makes the cluster's own."
        ),
        "ignorePreflightErrors is not shown: kina-init adds the preflight checks the running node cannot pass (NumCPU, Mem, SystemVerification) at boot.".to_string(),
    ];
    if ClusterDir::new(dirs, name).exists() {
        header.push(format!(
            "Cluster {name} already exists: `kina up` would refuse to create it (`kina down --name {name}` deletes it)."
        ));
    }

    let mut nodes = Vec::new();
    for (i, planned) in plan.nodes.iter().enumerate() {
        let spec = plan
            .node_spec(
                i,
                request.config,
                Some(&secrets),
                provider.node_interfaces(&plan, i)?,
            )
            .with_context(|| format!("node {}'s spec", planned.name))?;
        let k = spec
            .kubernetes
            .as_ref()
            .with_context(|| format!("node {}'s spec has no Kubernetes settings", planned.name))?;
        let mut notes = Vec::new();
        let node_ip = match (plan.addressing, planned.address) {
            (Addressing::Fixed, Some(address)) => address,
            _ => {
                let address = documentation_address(i);
                notes.push(format!(
                    "{address} is a documentation address (RFC 5737): the {} provider hands out the node's address when it starts, and kina-init writes that one.",
                    provider.kind().label()
                ));
                address
            }
        };
        let generated = kubeadm::generate(&Inputs {
            spec: &spec,
            kubernetes: k,
            version,
            node_ip,
            ignored_checks: &[],
        })
        .map_err(|e| anyhow::anyhow!("node {}: {e}", planned.name))?;
        notes.extend(generated.notes.iter().cloned());
        let containerd =
            containerd_config::dry_run_text(&spec, ASSUMED_CONTAINERD_MAJOR, Some(&version_text))
                .map_err(|e| {
                anyhow::anyhow!("node {}'s containerd configuration: {e}", planned.name)
            })?;
        let command = match planned.role {
            Role::ControlPlane => "kubeadm init",
            Role::Worker => "kubeadm join",
        };
        nodes.push(NodeOutput {
            name: planned.name.clone(),
            role: planned.role.clone(),
            node_ip,
            notes,
            sections: vec![
                Section {
                    title: format!("/etc/kina/kubeadm.yaml ({command} --config)"),
                    body: kubeadm::render(&generated.docs),
                },
                Section {
                    title: "kubelet flags from kubeletExtraArgs (KUBELET_KUBEADM_ARGS in /var/lib/kubelet/kubeadm-flags.env, besides kubeadm's own defaults)".to_string(),
                    body: kubeadm::kubelet_flags(&generated.docs).join("\n") + "\n",
                },
                Section {
                    title: format!(
                        "/etc/containerd/config.toml (for containerd {ASSUMED_CONTAINERD_MAJOR}.x, which kina's Kubernetes recipes ship; after the cluster's containerd patches)"
                    ),
                    body: containerd,
                },
            ],
        });
    }
    Ok(DryRun { header, nodes })
}

/// The printed form: the header as `#` lines, then per node its notes and
/// its sections, each under a title line.
pub fn render(run: &DryRun) -> String {
    let mut out = String::new();
    for line in &run.header {
        let _ = writeln!(out, "# {line}");
    }
    for node in &run.nodes {
        let role = match node.role {
            Role::ControlPlane => "control-plane",
            Role::Worker => "worker",
        };
        let _ = writeln!(
            out,
            "\n=== node {} ({role}, node IP {}) ===",
            node.name, node.node_ip
        );
        for note in &node.notes {
            let _ = writeln!(out, "# {note}");
        }
        for section in &node.sections {
            let _ = writeln!(out, "--- {} ---", section.title);
            out.push_str(&section.body);
            if !section.body.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_as_users_write_them() {
        let (v, exact) = parse_kubernetes_version("1.35").unwrap();
        assert_eq!((v.to_string().as_str(), exact), ("v1.35.0", false));
        let (v, exact) = parse_kubernetes_version("v1.36.4").unwrap();
        assert_eq!((v.to_string().as_str(), exact), ("v1.36.4", true));
        let err = parse_kubernetes_version("latest").unwrap_err().to_string();
        assert!(err.contains("--kubernetes-version latest"), "{err}");
    }
}
