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

pub fn nodes(dirs: &KinaDirs, name: &str, json: bool) -> anyhow::Result<()> {
    let (provider, plan) = open(dirs, name)?;
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
            })
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<28} {:<14} {:<12} {:<16} PHASE",
        "NAME", "ROLE", "ADDRESS", "POD CIDR"
    );
    for r in rows {
        let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
        println!(
            "{:<28} {:<14} {:<12} {:<16} {}",
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
