//! `kina-init pod-network-check`: proves the node's pod network works the
//! way containerd will use it. Two scratch pods (network namespaces) are
//! attached by running the node's CNI configuration list exactly as a CNI
//! runtime does (every plugin in order, each given the previous result),
//! must get addresses in the pod CIDR and reach each other and the node,
//! and are detached again (DEL in reverse order), after which no veth,
//! route or address lease may remain.

use std::path::{Path, PathBuf};
use std::process::Command;

use kina_contract::cidr::Ipv4Cidr;
use serde::Serialize;
use serde_json::{Value, json};

use crate::boot::cni_config::{CNI_CONF_DIR, CNI_CONF_FILE};
use crate::children;

/// Where upstream (first) and Debian packaging put CNI plugins.
pub const CNI_BIN_DIRS: [&str; 2] = ["/opt/cni/bin", "/usr/lib/cni"];

pub fn default_conf() -> PathBuf {
    Path::new(CNI_CONF_DIR).join(CNI_CONF_FILE)
}

#[derive(Clone, Debug, Serialize)]
pub struct Pod {
    pub name: String,
    pub address: String,
    pub gateway: String,
    pub host_interface: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    pub check: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub network: String,
    pub subnet: String,
    pub pods: Vec<Pod>,
    pub checks: Vec<CheckResult>,
}

impl CheckReport {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    pub fn render(&self) -> String {
        let mut out = format!("network {} over {}\n", self.network, self.subnet);
        for c in &self.checks {
            out.push_str(&format!(
                "{:<4} {}: {}\n",
                if c.ok { "ok" } else { "FAIL" },
                c.check,
                c.detail
            ));
        }
        out
    }
}

/// The network list as a CNI runtime reads it.
struct NetworkList {
    name: String,
    version: Value,
    plugins: Vec<Value>,
    subnet: String,
    ipam_dir: PathBuf,
}

fn load(conf: &Path) -> Result<NetworkList, String> {
    let text = std::fs::read(conf).map_err(|e| format!("reading {}: {e}", conf.display()))?;
    let v: Value = serde_json::from_slice(&text)
        .map_err(|e| format!("{} is not JSON: {e}", conf.display()))?;
    let name = v["name"]
        .as_str()
        .ok_or_else(|| format!("{}: no network name", conf.display()))?
        .to_string();
    let plugins = v["plugins"]
        .as_array()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| format!("{}: no plugins", conf.display()))?
        .clone();
    let ipam = &plugins[0]["ipam"];
    let subnet = ipam["ranges"][0][0]["subnet"]
        .as_str()
        .or_else(|| ipam["subnet"].as_str())
        .ok_or_else(|| format!("{}: the first plugin has no IPAM subnet", conf.display()))?
        .to_string();
    // host-local's default data directory, unless the config names one.
    let ipam_dir = ipam["dataDir"]
        .as_str()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/cni/networks"))
        .join(&name);
    Ok(NetworkList {
        name,
        version: v["cniVersion"].clone(),
        plugins,
        subnet,
        ipam_dir,
    })
}

fn plugin_path(kind: &str, bin_dirs: &[PathBuf]) -> Result<PathBuf, String> {
    bin_dirs
        .iter()
        .map(|d| d.join(kind))
        .find(|p| p.exists())
        .ok_or_else(|| {
            format!(
                "CNI plugin `{kind}` is in none of {}",
                bin_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// One plugin's network configuration as the CNI spec hands it over: the
/// list's name and version injected, and the previous plugin's result.
pub fn plugin_config(
    list_name: &str,
    version: &Value,
    plugin: &Value,
    prev: Option<&Value>,
) -> Value {
    let mut conf = plugin.clone();
    conf["name"] = json!(list_name);
    conf["cniVersion"] = version.clone();
    if let Some(prev) = prev {
        conf["prevResult"] = prev.clone();
    }
    conf
}

fn invoke(
    command: &str,
    net: &NetworkList,
    plugin: &Value,
    prev: Option<&Value>,
    pod: &str,
    bin_dirs: &[PathBuf],
) -> Result<Option<Value>, String> {
    let kind = plugin["type"].as_str().unwrap_or_default();
    let path = plugin_path(kind, bin_dirs)?;
    let conf = plugin_config(&net.name, &net.version, plugin, prev);
    let cni_path = bin_dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let out = children::output_with_input(
        Command::new(&path)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", pod)
            .env("CNI_NETNS", format!("/run/netns/{pod}"))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", cni_path),
        &serde_json::to_vec(&conf).map_err(|e| e.to_string())?,
    )
    .map_err(|e| format!("running {}: {e}", path.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{kind} {command} for {pod} failed ({}): {} {}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    if command == "DEL" || out.stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&out.stdout)
        .map(Some)
        .map_err(|e| format!("{kind} {command} for {pod}: result is not JSON: {e}"))
}

fn ip(args: &[&str]) -> Result<String, String> {
    let out = children::output(Command::new("ip").args(args))
        .map_err(|e| format!("cannot run ip (iproute2): {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ping(from_pod: &str, to: &str) -> CheckResult {
    let out = children::output(
        Command::new("ip").args(["netns", "exec", from_pod, "ping", "-c1", "-W3", to]),
    );
    let (ok, detail) = match out {
        Ok(o) if o.status.success() => (true, format!("{from_pod} reaches {to}")),
        Ok(o) => (
            false,
            format!(
                "{from_pod} cannot reach {to}: {}",
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .last()
                    .unwrap_or("")
                    .trim()
            ),
        ),
        Err(e) => (false, format!("cannot run ping in {from_pod}: {e}")),
    };
    CheckResult {
        check: "ping".into(),
        ok,
        detail,
    }
}

/// `a.b.c.d/len` contains `addr`?
fn in_subnet(subnet: &str, addr: &str) -> bool {
    match (Ipv4Cidr::parse(subnet), addr.parse()) {
        (Ok(cidr), Ok(ip)) => cidr.contains(ip),
        _ => false,
    }
}

/// Runs the check with the network list at `conf`; `Err` only when the
/// check could not run at all (no config, no plugins, no iproute2).
pub fn run_check(conf: &Path, bin_dirs: &[PathBuf]) -> Result<CheckReport, String> {
    let net = load(conf)?;
    for p in &net.plugins {
        plugin_path(p["type"].as_str().unwrap_or_default(), bin_dirs)?;
    }
    let tag = format!("kina-check-{}", std::process::id());
    let pods = [format!("{tag}-a"), format!("{tag}-b")];
    let mut report = CheckReport {
        network: net.name.clone(),
        subnet: net.subnet.clone(),
        pods: Vec::new(),
        checks: Vec::new(),
    };
    let mut added: Vec<(String, Value)> = Vec::new();
    let result = attach_and_ping(&net, &pods, bin_dirs, &mut report, &mut added);
    if let Err(e) = result {
        report.checks.push(CheckResult {
            check: "add".into(),
            ok: false,
            detail: e,
        });
    }
    // Detach what was attached, in reverse plugin order, then verify.
    for (pod, result) in &added {
        let mut del_errors = Vec::new();
        for plugin in net.plugins.iter().rev() {
            if let Err(e) = invoke("DEL", &net, plugin, Some(result), pod, bin_dirs) {
                del_errors.push(e);
            }
        }
        report.checks.push(CheckResult {
            check: "del".into(),
            ok: del_errors.is_empty(),
            detail: if del_errors.is_empty() {
                format!("{pod} detached")
            } else {
                del_errors.join("; ")
            },
        });
    }
    for pod in &pods {
        let _ = ip(&["netns", "del", pod]);
    }
    for p in &report.pods.clone() {
        let link_gone = ip(&["link", "show", &p.host_interface]).is_err();
        let route = ip(&["-4", "route", "show", &format!("{}/32", p.address)]).unwrap_or_default();
        let lease = net.ipam_dir.join(&p.address);
        let leftovers: Vec<String> = [
            (!link_gone).then(|| format!("veth {}", p.host_interface)),
            (!route.trim().is_empty()).then(|| format!("route {}", route.trim())),
            lease.exists().then(|| format!("lease {}", lease.display())),
        ]
        .into_iter()
        .flatten()
        .collect();
        report.checks.push(CheckResult {
            check: "cleanup".into(),
            ok: leftovers.is_empty(),
            detail: if leftovers.is_empty() {
                format!("nothing of {} ({}) remains", p.name, p.address)
            } else {
                format!("left behind for {}: {}", p.name, leftovers.join(", "))
            },
        });
    }
    Ok(report)
}

fn attach_and_ping(
    net: &NetworkList,
    pods: &[String; 2],
    bin_dirs: &[PathBuf],
    report: &mut CheckReport,
    added: &mut Vec<(String, Value)>,
) -> Result<(), String> {
    for pod in pods {
        ip(&["netns", "add", pod])?;
        let mut prev: Option<Value> = None;
        for plugin in &net.plugins {
            // A plugin that prints nothing passes the previous result on.
            if let Some(result) = invoke("ADD", net, plugin, prev.as_ref(), pod, bin_dirs)? {
                prev = Some(result);
            }
            if let Some(p) = &prev {
                added.retain(|(name, _)| name != pod);
                added.push((pod.clone(), p.clone()));
            }
        }
        let result = prev.ok_or_else(|| format!("the chain gave {pod} no result"))?;
        let found = pod_of(pod, &result)?;
        report.checks.push(CheckResult {
            check: "address".into(),
            ok: in_subnet(&net.subnet, &found.address),
            detail: format!("{pod} got {} (pod CIDR {})", found.address, net.subnet),
        });
        report.pods.push(found);
    }
    let (a, b) = (&report.pods[0], &report.pods[1]);
    let pings = [
        ping(&a.name, &b.address),
        ping(&b.name, &a.address),
        ping(&a.name, &a.gateway),
        ping(&b.name, &b.gateway),
    ];
    report.checks.extend(pings);
    Ok(())
}

/// Where `pod attach` keeps each scratch pod's CNI result: `pod detach`
/// hands it to the plugins as the CNI spec asks for DEL.
pub const SCRATCH_POD_DIR: &str = "/run/kina/pods";

/// `kina-init pod attach NAME`: a scratch pod (a network namespace named
/// NAME) attached through the node's whole CNI chain, as containerd would
/// attach a pod, and left in place, for checking pod traffic between nodes
/// by hand or from a test. Returns the pod as `pod-network-check` reports
/// pods.
pub fn attach_pod(
    conf: &Path,
    bin_dirs: &[PathBuf],
    name: &str,
    state_dir: &Path,
) -> Result<Pod, String> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(format!("pod name `{name}` must be a plain file name"));
    }
    let net = load(conf)?;
    ip(&["netns", "add", name])?;
    let mut prev: Option<Value> = None;
    let mut chain = Ok(());
    for plugin in &net.plugins {
        match invoke("ADD", &net, plugin, prev.as_ref(), name, bin_dirs) {
            Ok(Some(result)) => prev = Some(result),
            Ok(None) => {}
            Err(e) => {
                chain = Err(e);
                break;
            }
        }
    }
    let recorded = chain.and_then(|()| {
        let result = prev
            .clone()
            .ok_or_else(|| format!("the chain gave {name} no result"))?;
        std::fs::create_dir_all(state_dir)
            .map_err(|e| format!("creating {}: {e}", state_dir.display()))?;
        let path = state_dir.join(format!("{name}.json"));
        let text = serde_json::to_vec(&result).map_err(|e| e.to_string())?;
        std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
        pod_of(name, &result)
    });
    if recorded.is_err() {
        // Nothing half-attached stays: DEL is safe for plugins that never ran.
        for plugin in net.plugins.iter().rev() {
            let _ = invoke("DEL", &net, plugin, prev.as_ref(), name, bin_dirs);
        }
        let _ = ip(&["netns", "del", name]);
    }
    recorded
}

/// `kina-init pod detach NAME`: undoes [`attach_pod`].
pub fn detach_pod(
    conf: &Path,
    bin_dirs: &[PathBuf],
    name: &str,
    state_dir: &Path,
) -> Result<(), String> {
    let net = load(conf)?;
    let path = state_dir.join(format!("{name}.json"));
    let text = std::fs::read(&path)
        .map_err(|e| format!("no scratch pod {name} ({}: {e})", path.display()))?;
    let result: Value =
        serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let errors: Vec<String> = net
        .plugins
        .iter()
        .rev()
        .filter_map(|plugin| invoke("DEL", &net, plugin, Some(&result), name, bin_dirs).err())
        .collect();
    ip(&["netns", "del", name])?;
    let _ = std::fs::remove_file(&path);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

fn pod_of(name: &str, result: &Value) -> Result<Pod, String> {
    let address = result["ips"][0]["address"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .ok_or_else(|| format!("{name}: the result has no address: {result}"))?
        .to_string();
    let gateway = result["ips"][0]["gateway"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let host_interface = result["interfaces"]
        .as_array()
        .and_then(|ifs| {
            ifs.iter()
                .find(|i| i["sandbox"].as_str().unwrap_or_default().is_empty())
        })
        .and_then(|i| i["name"].as_str())
        .unwrap_or_default()
        .to_string();
    Ok(Pod {
        name: name.to_string(),
        address,
        gateway,
        host_interface,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_plugin_gets_the_list_name_version_and_the_previous_result() {
        let plugin = json!({"type": "portmap", "capabilities": {"portMappings": true}});
        let prev = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.244.0.2/24"}]});
        let conf = plugin_config("kina", &json!("1.0.0"), &plugin, Some(&prev));
        assert_eq!(conf["name"], "kina");
        assert_eq!(conf["cniVersion"], "1.0.0");
        assert_eq!(conf["prevResult"]["ips"][0]["address"], "10.244.0.2/24");
        assert_eq!(conf["type"], "portmap");
        assert!(
            plugin_config("kina", &json!("1.0.0"), &plugin, None)
                .get("prevResult")
                .is_none()
        );
    }

    #[test]
    fn subnet_membership() {
        assert!(in_subnet("10.244.0.0/24", "10.244.0.7"));
        assert!(!in_subnet("10.244.0.0/24", "10.244.1.7"));
        assert!(!in_subnet("nonsense", "10.244.0.7"));
    }
}
