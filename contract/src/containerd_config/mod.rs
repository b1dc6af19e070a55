//! containerd's configuration for a kina node, as kina-init writes it at
//! every boot and as `kina up --dry-run` shows it: one function for both
//! ([`config_text`]), so what the host prints is what the node runs.
//!
//! cgroupfs for runc (there is no systemd to own cgroups), the overlayfs
//! snapshotter unless overlay cannot work on the root filesystem (then the
//! slower native one, as Apple's own `container k8s` does), the CNI plugin
//! directories that exist in the image, and the sandbox (pause) image
//! kubeadm expects ([`sandbox`]). Then the cluster's `containerdConfigPatches`
//! and `containerdConfigPatchesJSON6902`, with kind's semantics ([`patch`]).
//!
//! The file is in config version 2 for containerd 1.7 and 2.x alike, as
//! kind's node image writes it for its containerd 2.3
//! (kind `images/base/files/etc/containerd/config.toml:1-2`, built with
//! containerd v2.3.4 in `images/base/Dockerfile:127`). containerd 2.x reads
//! version 2 and converts it in memory (containerd `docs/cri/config.md`
//! "The config version 2 used in containerd 1.x is still supported and
//! automatically converted"; the per-plugin rules are `ConfigMigration` in
//! `plugins/cri/images/plugin.go` and `plugins/cri/runtime/plugin.go`:
//! `sandbox_image` becomes `pinned_images.sandbox`, `registry` and the
//! snapshotter move to the images plugin, `cni` and the runtimes to the
//! runtime plugin). Writing version 2 is what makes kind users' patches
//! behave as in kind: kind skips a merge patch whose `version` differs from
//! the config's (kind `pkg/apis/config/v1alpha4/types.go:75-80`), so a
//! version 3 config would skip every `version = 2` patch kind's users
//! write, and the keys of kind's documented local-registry recipe
//! (`[plugins."io.containerd.grpc.v1.cri".registry] config_path`) are only
//! migrated out of a version 2 config by containerd 2.0 to 2.2.

pub mod patch;
pub mod sandbox;

use crate::node_spec::NodeSpec;

pub use patch::{PatchError, PatchReport};

/// Where kina-init writes the configuration inside a node.
pub const CONFIG_PATH: &str = "/etc/containerd/config.toml";

/// The directory containerd reads CNI configurations from.
pub const CNI_CONF_DIR: &str = "/etc/cni/net.d";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Snapshotter {
    Overlayfs,
    Native,
}

impl Snapshotter {
    pub fn name(self) -> &'static str {
        match self {
            Snapshotter::Overlayfs => "overlayfs",
            Snapshotter::Native => "native",
        }
    }
}

/// The major version from `containerd --version` output
/// (`containerd github.com/containerd/containerd/v2 v2.2.1 …` or Debian's
/// `containerd containerd.io 1.7.24~ds1 …`).
pub fn containerd_major(version_output: &str) -> Option<u32> {
    version_output.split_whitespace().find_map(|word| {
        let w = word.trim_start_matches('v');
        let major = w.split('.').next()?;
        (w.contains('.') && major.chars().all(|c| c.is_ascii_digit()) && !major.is_empty())
            .then(|| major.parse().ok())
            .flatten()
    })
}

/// The snapshotter the CRI unpacks images into, read from a configuration
/// as written ([`config_text`], patches applied): version 2's
/// `plugins."io.containerd.grpc.v1.cri".containerd.snapshotter`, or
/// version 3's `plugins."io.containerd.cri.v1.images".snapshotter`, else
/// containerd's default, overlayfs. An import into any other snapshotter
/// would be invisible to the kubelet.
pub fn cri_snapshotter(config: &str) -> Result<String, String> {
    let table: toml::Table = config
        .parse()
        .map_err(|e| format!("containerd's configuration is not TOML: {e}"))?;
    let at = |path: &[&str]| {
        path.iter()
            .try_fold(None::<&toml::Value>, |value, key| {
                let next = match value {
                    None => table.get(*key),
                    Some(v) => v.get(*key),
                };
                next.map(Some).ok_or(())
            })
            .ok()
            .flatten()
            .and_then(toml::Value::as_str)
    };
    let configured = at(&[
        "plugins",
        "io.containerd.grpc.v1.cri",
        "containerd",
        "snapshotter",
    ])
    .or_else(|| at(&["plugins", "io.containerd.cri.v1.images", "snapshotter"]))
    .filter(|s| !s.is_empty());
    Ok(configured
        .unwrap_or(Snapshotter::Overlayfs.name())
        .to_string())
}

/// The CNI plugin directories kina-init looks in, upstream's first (the
/// Kubernetes recipes install there), then Debian's.
pub const CNI_BIN_DIRS: [&str; 2] = ["/opt/cni/bin", "/usr/lib/cni"];

/// The CNI plugin directories of [`CNI_BIN_DIRS`] that exist under `root`
/// and hold the ptp plugin.
pub fn cni_bin_dirs(root: &std::path::Path) -> Vec<&'static str> {
    CNI_BIN_DIRS
        .into_iter()
        .filter(|d| root.join(d.trim_start_matches('/')).join("ptp").exists())
        .collect()
}

/// What a node found out about itself that the configuration depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRuntime {
    /// From the import path containerd's binary records (kina-init
    /// `boot/go_buildinfo.rs`), else [`containerd_major`] of its `--version`.
    pub containerd_major: u32,
    pub snapshotter: Snapshotter,
    /// A full image reference, e.g. `registry.k8s.io/pause:3.10.1`.
    pub sandbox_image: String,
    /// Not empty; containerd 1.7 takes a single directory (the first),
    /// 2.x all of them.
    pub cni_bin_dirs: Vec<String>,
}

impl NodeRuntime {
    /// What `kina up --dry-run` assumes for a node it cannot look into: the
    /// overlayfs snapshotter (kina-init falls back to native only where the
    /// root filesystem cannot carry overlay), the CNI directory of the
    /// recipes that ship this containerd (Debian's 1.7 with Debian's
    /// plugins in /usr/lib/cni, the Kubernetes recipes' upstream 2.x with
    /// upstream plugins in /opt/cni/bin) and the pause image of
    /// [`sandbox::pause_image`] for `kubernetes_version` (kina-init asks
    /// the image's kubeadm instead, which agrees for released versions).
    pub fn assumed(
        containerd_major: u32,
        kubernetes_version: Option<&str>,
    ) -> Result<Self, sandbox::UnknownKubernetesVersion> {
        let cni = if containerd_major >= 2 {
            CNI_BIN_DIRS[0]
        } else {
            CNI_BIN_DIRS[1]
        };
        Ok(Self {
            containerd_major,
            snapshotter: Snapshotter::Overlayfs,
            sandbox_image: sandbox::pause_image(kubernetes_version)?,
            cni_bin_dirs: vec![cni.to_string()],
        })
    }
}

/// kina's own configuration, before the cluster's patches.
pub fn base_config(node: &NodeRuntime) -> String {
    let first_bin = node
        .cni_bin_dirs
        .first()
        .map_or(CNI_BIN_DIRS[0], String::as_str);
    let bin_dirs = if node.containerd_major >= 2 {
        // Copied to the runtime plugin's `cni.bin_dirs` by containerd
        // 2.x's migration (plugins/cri/runtime/plugin.go, the default case
        // of the `cni` keys); 1.7 knows only `bin_dir`.
        let quoted: Vec<String> = node.cni_bin_dirs.iter().map(|d| toml_string(d)).collect();
        format!("bin_dirs = [{}]", quoted.join(", "))
    } else {
        format!("bin_dir = {}", toml_string(first_bin))
    };
    let disabled = if node.containerd_major < 2 {
        format!("disabled_plugins = [{}]\n", toml_string(AUFS_SNAPSHOTTER))
    } else {
        String::new()
    };
    format!(
        r#"# Written by kina-init at every boot.
version = 2
{disabled}
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = {sandbox}

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "{snap}"

[plugins."io.containerd.grpc.v1.cri".cni]
  {bin_dirs}
  conf_dir = "{CNI_CONF_DIR}"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = false
"#,
        sandbox = toml_string(&node.sandbox_image),
        snap = node.snapshotter.name(),
    )
}

/// containerd 1.7's aufs snapshotter, which runs `modprobe aufs` at every
/// start to see whether it can work (containerd/aufs `aufs.go`,
/// `supported`): no kernel kina boots has aufs, and that process start
/// cost 0.23 s of containerd's start under TCG. containerd 2.0 removed the
/// plugin. A version 2 config names plugins by their full ID
/// (`V2DisabledFilter` in containerd 1.7 `services/server/config`).
pub const AUFS_SNAPSHOTTER: &str = "io.containerd.snapshotter.v1.aufs";

/// A TOML basic string holding `s`.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The configuration `spec`'s node runs: [`base_config`] with the spec's
/// containerd patches applied in kind's order. kina-init writes its
/// `text`; `kina up --dry-run` prints it.
pub fn config_text(spec: &NodeSpec, node: &NodeRuntime) -> Result<PatchReport, PatchError> {
    let base = base_config(node);
    patch::apply(
        &base,
        &spec.containerd_config_patches,
        &spec.containerd_config_patches_json6902,
    )
}

/// [`config_text`] for a node `kina up --dry-run` cannot look into, with
/// [`NodeRuntime::assumed`]'s facts: the text kina-init will write for
/// `spec` on an image with containerd `containerd_major` and Kubernetes
/// `kubernetes_version` (`None` for an image without Kubernetes).
pub fn dry_run_text(
    spec: &NodeSpec,
    containerd_major: u32,
    kubernetes_version: Option<&str>,
) -> Result<String, String> {
    let node =
        NodeRuntime::assumed(containerd_major, kubernetes_version).map_err(|e| e.to_string())?;
    config_text(spec, &node)
        .map(|report| report.text)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
