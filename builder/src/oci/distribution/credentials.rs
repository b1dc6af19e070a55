//! Credentials from docker's `config.json` (`auths`, `credHelpers`,
//! `credsStore`) and its credential helpers: who kina says it is when a
//! registry asks.

use super::*;

pub(super) fn docker_config_path(opts: &Options) -> Option<PathBuf> {
    opts.docker_config_dir
        .clone()
        .or_else(|| std::env::var_os("DOCKER_CONFIG").map(PathBuf::from))
        .or_else(|| dirs::home_dir().map(|h| h.join(".docker")))
        .map(|d| d.join("config.json"))
}

/// Credentials for `registry` from docker's config.json: `credHelpers`
/// first, then an inline `auths` entry, then `credsStore`, as docker does.
pub fn docker_credentials(opts: &Options, registry: &str) -> Result<Option<Credentials>> {
    let Some(path) = docker_config_path(opts) else {
        return Ok(None);
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(DistributionError::DockerConfig {
                path,
                message: e.to_string(),
            });
        }
    };
    let bad = |message: String| DistributionError::DockerConfig {
        path: path.clone(),
        message,
    };
    let doc: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    // Entries are keyed by host, or by URL when written by older docker logins.
    let keys: Vec<String> = vec![
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
    ];
    for key in &keys {
        if let Some(helper) = doc["credHelpers"][key].as_str() {
            return credential_helper(helper, key).map(Some);
        }
    }
    for key in &keys {
        let entry = &doc["auths"][key];
        if let Some(auth) = entry["auth"].as_str().filter(|a| !a.is_empty()) {
            use base64::Engine as _;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth)
                .map_err(|_| bad(format!("auths.{key}.auth is not base64")))?;
            let text = String::from_utf8(decoded)
                .map_err(|_| bad(format!("auths.{key}.auth is not UTF-8")))?;
            let (username, password) = text
                .split_once(':')
                .ok_or_else(|| bad(format!("auths.{key}.auth is not user:password")))?;
            return Ok(Some(Credentials {
                username: username.to_string(),
                password: password.to_string(),
            }));
        }
        if let (Some(u), Some(p)) = (entry["username"].as_str(), entry["password"].as_str()) {
            return Ok(Some(Credentials {
                username: u.to_string(),
                password: p.to_string(),
            }));
        }
    }
    if let Some(helper) = doc["credsStore"].as_str().filter(|h| !h.is_empty()) {
        return match credential_helper(helper, &keys[0]) {
            Ok(c) => Ok(Some(c)),
            // A store that has nothing for this registry means anonymous.
            Err(DistributionError::CredentialHelper { message, .. })
                if message.contains("not found") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        };
    }
    Ok(None)
}

pub(super) fn credential_helper(helper: &str, registry: &str) -> Result<Credentials> {
    use std::io::Write;
    let err = |message: String| DistributionError::CredentialHelper {
        helper: helper.to_string(),
        registry: registry.to_string(),
        message,
    };
    let mut child = std::process::Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| err(format!("cannot run it ({e}); is it installed and on PATH?")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(registry.as_bytes())
            .map_err(|e| err(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| err(e.to_string()))?;
    if !out.status.success() {
        // Helpers print "credentials not found in native keychain" and the like,
        // never the secret.
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        return Err(err(format!("{} ({})", text, out.status)));
    }
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|_| err("its output is not the expected JSON".into()))?;
    match (doc["Username"].as_str(), doc["Secret"].as_str()) {
        (Some(u), Some(s)) => Ok(Credentials {
            username: u.to_string(),
            password: s.to_string(),
        }),
        _ => Err(err("its output has no Username and Secret".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_auths_are_decoded() {
        use base64::Engine as _;
        let dir = tempfile::tempdir().unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode("bob:pa:ss");
        std::fs::write(
            dir.path().join("config.json"),
            format!(r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{auth}"}}}}}}"#),
        )
        .unwrap();
        let opts = Options {
            docker_config_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        let c = docker_credentials(&opts, "127.0.0.1:5000")
            .unwrap()
            .unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("bob", "pa:ss"));
        assert!(
            docker_credentials(&opts, "127.0.0.1:5001")
                .unwrap()
                .is_none()
        );
    }
}
