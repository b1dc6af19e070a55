//! `kina get clusters`, `kina get nodes` and `kina status`: what the
//! records say, and what the nodes say through their status files.

use std::time::Duration;

use kina_contract::node_spec::Role;

use super::open;
use crate::cluster::record;
use crate::cluster::wait::{node_phase, read_status};
use crate::dirs::KinaDirs;
use crate::provider::Provider;

pub fn clusters(dirs: &KinaDirs, json: bool) -> anyhow::Result<()> {
    let names = record::names(dirs);
    if json {
        println!("{}", serde_json::to_string_pretty(&names)?);
    } else if names.is_empty() {
        eprintln!("No kina clusters found.");
    } else {
        for name in names {
            println!("{name}");
        }
    }
    Ok(())
}

/// The image a cluster's nodes boot, as `get nodes` shows it: the
/// reference, with the build's digest shortened where `up` recorded one
/// (a rebuilt image keeps its name, so the name alone does not say which
/// build runs).
fn image_column(reference: &str, digest: Option<&str>) -> String {
    let Some(digest) = digest else {
        return reference.to_string();
    };
    match digest.split_once(':') {
        Some((algorithm, hex)) => {
            let short: String = hex.chars().take(12).collect();
            format!("{reference}@{algorithm}:{short}")
        }
        None => format!("{reference}@{digest}"),
    }
}

pub fn nodes(dirs: &KinaDirs, name: &str, json: bool) -> anyhow::Result<()> {
    let (provider, plan) = open(dirs, name)?;
    let image = serde_json::json!({
        "reference": plan.image,
        "digest": plan.image_digest,
    });
    let rows: Vec<serde_json::Value> = plan
        .nodes
        .iter()
        .map(|n| {
            let (running, phase) = node_phase(&provider, &n.name);
            serde_json::json!({
                "name": n.name,
                "role": match n.role {
                    Role::ControlPlane => "control-plane",
                    Role::Worker => "worker",
                },
                "running": running,
                "address": n.address.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
                "podCIDR": n.pod_cidr,
                "phase": phase,
                "image": image,
            })
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let image = image_column(&plan.image, plan.image_digest.as_deref());
    println!(
        "{:<28} {:<14} {:<12} {:<16} {:<12} IMAGE",
        "NAME", "ROLE", "ADDRESS", "POD CIDR", "PHASE"
    );
    for r in rows {
        let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
        println!(
            "{:<28} {:<14} {:<12} {:<16} {:<12} {image}",
            s("name"),
            s("role"),
            s("address"),
            s("podCIDR"),
            s("phase")
        );
    }
    Ok(())
}

pub fn status(dirs: &KinaDirs, name: &str, json: bool) -> anyhow::Result<()> {
    let (provider, plan) = open(dirs, name)?;
    let mut rows = Vec::new();
    for n in &plan.nodes {
        let status = provider
            .is_running(&n.name)
            .then(|| read_status(&provider, &n.name, Duration::from_secs(10)));
        if json {
            rows.push(serde_json::json!({
                "name": n.name,
                "running": status.is_some(),
                "status": status.as_ref().and_then(|s| s.as_ref().ok()),
                "error": status.as_ref().and_then(|s| s.as_ref().err()).map(|e| format!("{e:#}")),
            }));
            continue;
        }
        println!("== {}", n.name);
        match status {
            None => println!("stopped"),
            Some(Ok(s)) => print!("{}", s.render()),
            Some(Err(e)) => println!("no status yet: {e:#}"),
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::image_column;

    #[test]
    fn the_image_column_names_the_build_when_it_is_known() {
        assert_eq!(
            image_column(
                "kina.local/node:base",
                Some("sha256:3b1f9c1f6c0d4e8a9b2e7f0a1c3d5e7f9a0b2c4d6e8f0a1b3c5d7e9f0a2b4c6d")
            ),
            "kina.local/node:base@sha256:3b1f9c1f6c0d"
        );
        assert_eq!(
            image_column("kina.local/node:base", None),
            "kina.local/node:base"
        );
    }
}
