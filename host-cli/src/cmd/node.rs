//! `kina node …`: single nodes as QEMU VMs, the building block `kina up`
//! will use for clusters.

use std::io::{IsTerminal, Read, Write};
use std::time::Duration;

use anyhow::{Context, bail};
use kina_builder::fetch::cache::Cache;
use kina_builder::fetch::mirror::DebianMirrors;
use kina_builder::kernel::KernelRecipe;
use kina_builder::platform::Arch;
use kina_contract::exec::{Request, STDOUT};
use kina_contract::node_spec::{NODE_SPEC_VERSION, NodeSpec, Role};
use kina_qemu::accel::AccelChoice;
use kina_qemu::node::{self, CreateOptions, NodePaths};
use kina_qemu::vm::HostForward;

use crate::cli::{MirrorArgs, NodeCommand, NodeCreateArgs, WaitArgs};
use crate::dirs::KinaDirs;

pub fn kernel_mirrors(args: &MirrorArgs, recipe: &KernelRecipe) -> anyhow::Result<DebianMirrors> {
    DebianMirrors::resolve(
        args.mirror.as_deref(),
        args.security_mirror.as_deref(),
        &recipe.debian_spec(),
    )
    .context("choosing the Debian mirror for the kernel")
}

/// The node architecture `--platform` names (`amd64`, `linux/arm64`), else
/// the host's.
pub fn node_arch(platform: Option<&str>) -> anyhow::Result<Arch> {
    match platform {
        Some(p) => p
            .trim_start_matches("linux/")
            .parse::<Arch>()
            .map_err(anyhow::Error::msg)
            .context("--platform"),
        None => Ok(match std::env::consts::ARCH {
            "aarch64" => Arch::Arm64,
            _ => Arch::Amd64,
        }),
    }
}

pub async fn run(command: NodeCommand, dirs: &KinaDirs) -> anyhow::Result<()> {
    let data = dirs.data();
    match command {
        NodeCommand::Create(args) => create(*args, dirs).await,
        NodeCommand::Start { name, wait } => {
            let (paths, record) = node::load(data, &name)?;
            node::start(&paths, &record)?;
            wait_for(&paths, &name, &wait)
        }
        NodeCommand::Stop { name } => {
            let (paths, _) = node::load(data, &name)?;
            let how = node::stop(&paths, Duration::from_secs(60));
            println!("{name}: {how}");
            Ok(())
        }
        NodeCommand::Rm { names } => {
            for name in names {
                node::remove(data, &name)?;
                println!("removed {name}");
            }
            Ok(())
        }
        NodeCommand::List { json } => {
            let nodes = node::list(data);
            if json {
                let rows: Vec<serde_json::Value> = nodes
                    .iter()
                    .map(|(r, running)| serde_json::json!({"node": r, "running": running}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<20} {:<8} {:<6} {:<5} IMAGE",
                    "NAME", "STATE", "ARCH", "ACCEL"
                );
                for (r, running) in nodes {
                    let state = if running { "running" } else { "stopped" };
                    println!(
                        "{:<20} {state:<8} {:<6} {:<5} {}",
                        r.name, r.arch, r.accel, r.image
                    );
                }
            }
            Ok(())
        }
        NodeCommand::Status { name, json } => {
            let (paths, _) = node::load(data, &name)?;
            let status = node::status(&paths, &name, Duration::from_secs(30))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", status.render());
            }
            Ok(())
        }
        NodeCommand::Exec {
            name,
            interactive,
            command,
        } => {
            let (paths, _) = node::load(data, &name)?;
            exec(&paths, &command, interactive)
        }
        NodeCommand::Logs { name } => {
            let (paths, _) = node::load(data, &name)?;
            let text = std::fs::read(&paths.console_log)
                .with_context(|| format!("reading {}", paths.console_log.display()))?;
            std::io::stdout().write_all(&text)?;
            Ok(())
        }
    }
}

fn parse_forward(text: &str) -> anyhow::Result<HostForward> {
    let parsed = text
        .split_once(':')
        .and_then(|(h, g)| Some(HostForward::loopback_tcp(h.parse().ok()?, g.parse().ok()?)));
    parsed
        .with_context(|| format!("--forward {text}: expected HOST_PORT:NODE_PORT, e.g. 16443:6443"))
}

async fn create(args: NodeCreateArgs, dirs: &KinaDirs) -> anyhow::Result<()> {
    let arch = node_arch(args.platform.as_deref())?;
    let accel: AccelChoice = args.accel.parse()?;
    let kernel = crate::node_kernel::resolve(
        args.kernel.as_deref(),
        "--kernel",
        dirs,
        arch,
        &args.mirrors,
    )?;
    let forwards = args
        .forwards
        .iter()
        .map(|f| parse_forward(f))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut spec = NodeSpec::unnamed();
    spec.version = NODE_SPEC_VERSION;
    spec.name = args.name.clone();
    spec.cluster = args.name.clone();
    spec.role = Role::ControlPlane;
    spec.pod_cidr = args.pod_cidr.clone();
    spec.interface = Some(node::user_network_interface());
    spec.required_kernel_profiles = if args.profiles.is_empty() {
        vec!["kubernetes-base".into(), "ptp".into()]
    } else {
        args.profiles.clone()
    };
    let mut extra_files = Vec::new();
    for file in &args.profile_files {
        let text = std::fs::read(file)
            .with_context(|| format!("reading kernel profile {}", file.display()))?;
        let name = file
            .file_name()
            .with_context(|| format!("--profile-file {}: not a file", file.display()))?;
        let path = std::path::Path::new(kina_contract::kernel::LOCAL_PROFILES_DIR).join(name);
        extra_files.push((path, text, 0o644));
    }
    let cache = Cache::open(dirs.cache()).context("opening the download cache")?;
    let data = dirs.data();
    eprintln!(
        "Creating node {} ({arch}) from {}, {}",
        args.name,
        args.image,
        kernel.describe()
    );
    let record = node::create(
        data,
        CreateOptions {
            name: args.name.clone(),
            image: args.image.clone(),
            image_store: dirs.images(),
            arch,
            kernel,
            cache,
            accel,
            cpus: args.cpus,
            memory_mib: args.memory,
            disk_size: args.disk_size << 30,
            spec,
            host_forwards: forwards,
            segment: None,
            extra_files,
        },
    )
    .await?;
    eprintln!(
        " ✓ booting kernel {} under {} ({})",
        record.kernel_release, record.accel, record.accel_reason
    );
    let paths = NodePaths::new(data, &args.name);
    wait_for(&paths, &args.name, &args.wait)
}

fn wait_for(paths: &NodePaths, name: &str, wait: &WaitArgs) -> anyhow::Result<()> {
    if wait.wait == "none" {
        return Ok(());
    }
    wait.wait
        .parse::<kina_contract::status::PhaseId>()
        .context("--wait (a boot phase, or none)")?;
    let status = node::wait_for_phase(paths, name, &wait.wait, Duration::from_secs(wait.timeout))?;
    print!("{}", status.render());
    Ok(())
}

fn exec(paths: &NodePaths, command: &[String], interactive: bool) -> anyhow::Result<()> {
    let mut stdin = Vec::new();
    if interactive && !std::io::stdin().is_terminal() {
        std::io::stdin()
            .read_to_end(&mut stdin)
            .context("reading standard input")?;
    }
    let exit = kina_qemu::exec::call(
        &paths.exec_socket,
        &Request::Exec {
            argv: command.to_vec(),
        },
        &stdin,
        Duration::from_secs(24 * 3600),
        |kind, data| {
            // Output is streamed as it arrives; a closed pipe ends nothing
            // in the node.
            let _ = if kind == STDOUT {
                std::io::stdout().write_all(data)
            } else {
                std::io::stderr().write_all(data)
            };
        },
    )?;
    if let Some(error) = exit.error {
        bail!("{error}");
    }
    match exit.code {
        Some(0) => Ok(()),
        Some(code) => std::process::exit(code),
        None => bail!(
            "the command was killed by signal {}",
            exit.signal.unwrap_or(0)
        ),
    }
}
