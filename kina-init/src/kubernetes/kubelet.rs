//! The kubelet's command line, built as kubeadm's systemd drop-in
//! (10-kubeadm.conf) builds it, since kina-init runs the kubelet in
//! systemd's place:
//!
//! `kubelet --bootstrap-kubeconfig=… --kubeconfig=… --config=…
//! $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS`
//!
//! `KUBELET_KUBEADM_ARGS` comes from the file kubeadm writes, and
//! `KUBELET_EXTRA_ARGS` (the user's, last so they win) from
//! /etc/default/kubelet.

use std::path::{Path, PathBuf};

/// Where kubeadm and the kubelet keep their files, under a root directory
/// (`/` on a node; a scratch directory in tests).
#[derive(Clone, Debug)]
pub struct KubeletPaths {
    pub root: PathBuf,
}

impl KubeletPaths {
    fn at(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    pub fn flags_env(&self) -> PathBuf {
        self.at("/var/lib/kubelet/kubeadm-flags.env")
    }

    pub fn config(&self) -> PathBuf {
        self.at("/var/lib/kubelet/config.yaml")
    }

    pub fn default_env(&self) -> PathBuf {
        self.at("/etc/default/kubelet")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.at("/etc/kubernetes/kubelet.conf")
    }

    pub fn bootstrap_kubeconfig(&self) -> PathBuf {
        self.at("/etc/kubernetes/bootstrap-kubelet.conf")
    }

    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.at("/etc/kubernetes/admin.conf")
    }

    pub fn pki_dir(&self) -> PathBuf {
        self.at("/etc/kubernetes/pki")
    }

    /// kubeadm has written what the kubelet starts from (its kubelet-start
    /// phase, which runs before kubeadm waits for the kubelet).
    pub fn kubelet_configured(&self) -> bool {
        self.config().is_file() && read_env_var(&self.flags_env(), "KUBELET_KUBEADM_ARGS").is_ok()
    }
}

/// The value of `name` in an environment file as kubeadm writes it: one
/// `NAME="…"` line, the value quoted as Go's `%q` quotes it. A missing file
/// or variable is an error; kubeadm always writes the variable.
pub fn read_env_var(path: &Path, name: &str) -> Result<String, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    for line in text.lines() {
        let Some(value) = line
            .trim()
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('='))
        else {
            continue;
        };
        return unquote(value.trim()).map_err(|e| format!("{} in {}: {e}", name, path.display()));
    }
    Err(format!("{} sets no {name}", path.display()))
}

/// Undoes Go's `%q` (or leaves an unquoted value as it is).
fn unquote(value: &str) -> Result<String, String> {
    let Some(inner) = value.strip_prefix('"') else {
        return Ok(value.to_string());
    };
    let inner = inner
        .strip_suffix('"')
        .ok_or("opening quote without a closing one")?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => return Err(format!("unsupported escape \\{other}")),
            None => return Err("a trailing backslash".into()),
        }
    }
    Ok(out)
}

/// The kubelet's arguments, in the drop-in's order.
pub fn kubelet_args(paths: &KubeletPaths) -> Result<Vec<String>, String> {
    let mut args = vec![
        format!(
            "--bootstrap-kubeconfig={}",
            paths.bootstrap_kubeconfig().display()
        ),
        format!("--kubeconfig={}", paths.kubeconfig().display()),
        format!("--config={}", paths.config().display()),
    ];
    let kubeadm = read_env_var(&paths.flags_env(), "KUBELET_KUBEADM_ARGS")?;
    args.extend(kubeadm.split_whitespace().map(str::to_string));
    // The file is optional, as in the drop-in (`EnvironmentFile=-…`).
    if paths.default_env().exists() {
        let extra = read_env_var(&paths.default_env(), "KUBELET_EXTRA_ARGS").unwrap_or_default();
        args.extend(extra.split_whitespace().map(str::to_string));
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> (tempfile::TempDir, KubeletPaths) {
        let dir = tempfile::tempdir().unwrap();
        let paths = KubeletPaths {
            root: dir.path().to_path_buf(),
        };
        std::fs::create_dir_all(paths.flags_env().parent().unwrap()).unwrap();
        (dir, paths)
    }

    #[test]
    fn the_command_line_is_the_drop_ins_with_user_args_last() {
        let (_dir, p) = paths();
        // What kubeadm 1.36 writes (Go %q quoting).
        std::fs::write(
            p.flags_env(),
            "KUBELET_KUBEADM_ARGS=\"--node-ip=10.0.2.15 --register-with-taints=a=b:NoSchedule\"\n",
        )
        .unwrap();
        std::fs::create_dir_all(p.default_env().parent().unwrap()).unwrap();
        std::fs::write(p.default_env(), "KUBELET_EXTRA_ARGS=\"--v=4\"\n").unwrap();
        let args = kubelet_args(&p).unwrap();
        let root = p.root.display().to_string();
        assert_eq!(
            args,
            [
                format!("--bootstrap-kubeconfig={root}/etc/kubernetes/bootstrap-kubelet.conf"),
                format!("--kubeconfig={root}/etc/kubernetes/kubelet.conf"),
                format!("--config={root}/var/lib/kubelet/config.yaml"),
                "--node-ip=10.0.2.15".into(),
                "--register-with-taints=a=b:NoSchedule".into(),
                "--v=4".into(),
            ]
        );
    }

    #[test]
    fn a_missing_or_broken_flags_file_is_named() {
        let (_dir, p) = paths();
        let err = kubelet_args(&p).unwrap_err();
        assert!(err.contains("kubeadm-flags.env"), "{err}");
        std::fs::write(p.flags_env(), "KUBELET_KUBEADM_ARGS=\"--node-ip=1\n").unwrap();
        let err = kubelet_args(&p).unwrap_err();
        assert!(err.contains("without a closing one"), "{err}");
        assert!(!p.kubelet_configured());
    }

    #[test]
    fn go_quoting_is_undone() {
        assert_eq!(unquote(r#""a \"b\" c\\d""#).unwrap(), r#"a "b" c\d"#);
        assert_eq!(unquote("plain").unwrap(), "plain");
        assert!(unquote(r#""\x41""#).is_err());
    }
}
