//! containerd's configuration for a node without systemd.
//!
//! cgroupfs for runc (there is no systemd to own cgroups), the overlayfs
//! snapshotter unless overlay cannot work on the root filesystem (then the
//! slower native one, as Apple's own `container k8s` does), the CNI plugin
//! directories of both Debian (/usr/lib/cni) and upstream (/opt/cni/bin)
//! packaging, and the sandbox image. containerd 1.7 reads config version 2,
//! containerd 2.x version 3, whose CRI sections moved.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Snapshotter {
    Overlayfs,
    Native,
}

impl Snapshotter {
    fn name(self) -> &'static str {
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

/// The CNI plugin directories that exist on this node, upstream's first
/// (node recipes install there), then Debian's.
pub fn cni_bin_dirs(root: &std::path::Path) -> Vec<&'static str> {
    ["/opt/cni/bin", "/usr/lib/cni"]
        .into_iter()
        .filter(|d| root.join(d.trim_start_matches('/')).join("ptp").exists())
        .collect()
}

/// `cni_bin_dirs` must not be empty; containerd 1.7 takes a single
/// directory (the first), 2.x all of them.
pub fn config_toml(
    major: u32,
    snapshotter: Snapshotter,
    sandbox_image: &str,
    cni_bin_dirs: &[&str],
) -> String {
    let quoted: Vec<String> = cni_bin_dirs.iter().map(|d| format!("\"{d}\"")).collect();
    let cni_bins = format!("[{}]", quoted.join(", "));
    let first_bin = cni_bin_dirs.first().copied().unwrap_or("/opt/cni/bin");
    if major >= 2 {
        format!(
            r#"# Written by kina-init at every boot.
version = 3

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "{snap}"

[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "{sandbox_image}"

[plugins."io.containerd.cri.v1.runtime".cni]
  bin_dirs = {cni_bins}
  conf_dir = "/etc/cni/net.d"

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
  SystemdCgroup = false
"#,
            snap = snapshotter.name()
        )
    } else {
        format!(
            r#"# Written by kina-init at every boot.
version = 2

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "{snap}"

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "{first_bin}"
  conf_dir = "/etc/cni/net.d"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = false
"#,
            snap = snapshotter.name()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_directories_that_hold_the_ptp_plugin_are_used() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("usr/lib/cni")).unwrap();
        std::fs::write(dir.path().join("usr/lib/cni/ptp"), b"").unwrap();
        std::fs::create_dir_all(dir.path().join("opt/cni/bin")).unwrap();
        assert_eq!(cni_bin_dirs(dir.path()), ["/usr/lib/cni"]);
    }

    #[test]
    fn versions_are_read_from_upstream_and_debian_builds() {
        assert_eq!(
            containerd_major("containerd github.com/containerd/containerd/v2 v2.2.1 dea7da5"),
            Some(2)
        );
        assert_eq!(
            containerd_major("containerd containerd.io 1.7.24~ds1 1.7.24~ds1-6+deb13u1"),
            Some(1)
        );
        assert_eq!(containerd_major("nonsense"), None);
    }

    #[test]
    fn both_schemas_use_cgroupfs_the_chosen_snapshotter_and_both_cni_directories() {
        for major in [1, 2] {
            let text = config_toml(
                major,
                Snapshotter::Native,
                "registry.k8s.io/pause:3.10.1",
                &["/usr/lib/cni", "/opt/cni/bin"],
            );
            let doc: toml::Table = toml::from_str(&text).unwrap();
            assert_eq!(
                doc["version"].as_integer(),
                Some(if major >= 2 { 3 } else { 2 })
            );
            assert!(text.contains("SystemdCgroup = false"));
            assert!(text.contains(r#"snapshotter = "native""#));
            if major >= 2 {
                assert!(
                    text.contains(r#"bin_dirs = ["/usr/lib/cni", "/opt/cni/bin"]"#),
                    "{text}"
                );
            } else {
                assert!(text.contains(r#"bin_dir = "/usr/lib/cni""#), "{text}");
            }
            assert!(text.contains("registry.k8s.io/pause:3.10.1"));
        }
    }
}
