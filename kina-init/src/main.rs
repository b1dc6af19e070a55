//! kina-init: PID 1 of a kina node.
//!
//! Without arguments it boots the node (the image's entrypoint, or `/init`
//! of the QEMU provider's initramfs); the subcommands inspect a running node.

use std::process::ExitCode;

const USAGE: &str = "usage: kina-init (no arguments: boot the node) | --version | check-kernel [--profile PROFILE]... [--json] | status [--json] [--file PATH] | replace-spec [--file PATH] < SPEC | phase mount|network|sysctls|kubernetes [--root DIR] [--spec FILE] | pod-network-check [--conf FILE] [--json] | pod attach|detach NAME [--conf FILE] | cri pull IMAGE|images [--socket PATH] [--json] | images import [--socket PATH] [--namespace NS] [--snapshotter NAME] -|ARCHIVE";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--version" | "-V") => {
            println!("kina-init {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("--help" | "-h") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some("check-kernel") => check_kernel(&args[1..]),
        Some("status") => status(&args[1..]),
        Some("replace-spec") => replace_spec(&args[1..]),
        Some("phase") => phase(&args[1..]),
        Some("pod-network-check") => pod_network_check(&args[1..]),
        Some("pod") => scratch_pod(&args[1..]),
        Some("cri") => cri(&args[1..]),
        Some("images") => images(&args[1..]),
        Some(other) => {
            eprintln!("kina-init: unknown argument `{other}`\n{USAGE}");
            ExitCode::from(2)
        }
        None => boot(),
    }
}

/// The value after `name` (`--file PATH`), wherever it stands in `args`:
/// subcommands take their few options in any order, and an option given
/// without a value counts as absent.
fn option<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// Whether the switch `name` (`--json`) is among `args`.
fn switch(args: &[String], name: &str) -> bool {
    args.iter().any(|a| a == name)
}

#[cfg(target_os = "linux")]
fn check_kernel(args: &[String]) -> ExitCode {
    use kina_contract::kernel::report::Verdict;
    use kina_init::kernel_probe::{LiveProbes, check_running_kernel};

    let mut profiles = Vec::new();
    let mut json = false;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--json" => json = true,
            "--profile" => match rest.next() {
                Some(p) => profiles.push(p.clone()),
                None => {
                    eprintln!("kina-init check-kernel: --profile needs a name\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            other => {
                eprintln!("kina-init check-kernel: unknown argument `{other}`\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    if profiles.is_empty() {
        profiles.push("kubernetes-base".into());
    }
    let (report, times) = match check_running_kernel(&profiles, &LiveProbes::SCRATCH) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kina-init check-kernel: {e}");
            return ExitCode::from(2);
        }
    };
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("kina-init check-kernel: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        print!("{}", report.render(&[]));
        println!("checked in {times}");
    }
    if report.profiles.iter().any(|p| p.verdict == Verdict::Fail) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `kina-init status`: the boot phases as the status file records them.
fn status(args: &[String]) -> ExitCode {
    use kina_contract::status::{NodeStatus, STATUS_PATH};
    let json = switch(args, "--json");
    let path = option(args, "--file").unwrap_or(STATUS_PATH);
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!(
                "kina-init status: cannot read {path}: {e} (has this node booted with kina-init?)"
            );
            return ExitCode::from(1);
        }
    };
    if json {
        println!("{}", String::from_utf8_lossy(&bytes));
        return ExitCode::SUCCESS;
    }
    match serde_json::from_slice::<NodeStatus>(&bytes) {
        Ok(s) => {
            print!("{}", s.render());
            if s.failed().is_some() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("kina-init status: {path} is not a kina status file: {e}");
            ExitCode::from(2)
        }
    }
}

/// `kina-init replace-spec [--file PATH]`: the spec on standard input put
/// in force (`kina_init::spec_replace`), its digest printed on one line
/// (`kina_contract::spec_delivery::digest`). Exit 1 when it is refused,
/// with the spec in force unchanged; 2 for a usage error.
fn replace_spec(args: &[String]) -> ExitCode {
    use kina_contract::node_spec::NODE_SPEC_PATH;
    use kina_init::spec_replace::{read_incoming, replace_spec};
    let mut rest = args.iter();
    let mut path = NODE_SPEC_PATH.to_string();
    while let Some(arg) = rest.next() {
        match (arg.as_str(), rest.next()) {
            ("--file", Some(p)) => path = p.clone(),
            _ => {
                eprintln!("kina-init replace-spec: unexpected argument `{arg}`\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let replaced = read_incoming(&mut std::io::stdin().lock())
        .and_then(|bytes| replace_spec(std::path::Path::new(&path), &bytes));
    match replaced {
        Ok(digest) => {
            println!("{digest}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kina-init replace-spec: {e}");
            ExitCode::from(1)
        }
    }
}

/// `kina-init phase NAME [--root DIR] [--spec FILE]`: one boot phase on its
/// own, for debugging a node (and for testing phases in a scratch mount
/// namespace).
#[cfg(target_os = "linux")]
fn phase(args: &[String]) -> ExitCode {
    use kina_contract::node_spec::{NODE_SPEC_PATH, NodeSpec};
    use kina_contract::status::{NodeStatus, PhaseId};
    use kina_init::boot::{BootContext, StatusFile};
    use kina_init::sequence::{BY_HAND, by_hand};
    let root = option(args, "--root").map(std::path::PathBuf::from);
    let id = args.first().and_then(|name| name.parse::<PhaseId>().ok());
    let mut phase = match id.map(|id| by_hand(id, root)) {
        Some(Ok(Some(phase))) => phase,
        Some(Err(e)) => {
            eprintln!("kina-init phase: cannot start polling the phase's services: {e}");
            return ExitCode::from(1);
        }
        None | Some(Ok(None)) => {
            let names = BY_HAND.map(PhaseId::as_str).join(", ");
            eprintln!("kina-init phase: name one of {names}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let spec_path = option(args, "--spec").unwrap_or(NODE_SPEC_PATH);
    let spec = match std::fs::read(spec_path) {
        Ok(bytes) => match NodeSpec::from_json(&bytes, spec_path) {
            Ok(spec) => spec,
            Err(e) => {
                eprintln!("kina-init phase: {e}");
                return ExitCode::from(2);
            }
        },
        // Phases that need no spec (mount, sysctls) run without one.
        Err(_) => NodeSpec::unnamed(),
    };
    // A phase run by hand reports beside, not over, the boot's status.
    let status = StatusFile::new(
        std::env::temp_dir().join("kina-init-phase-status.json"),
        NodeStatus::new(&spec.name, "by-hand"),
    );
    let mut ctx = BootContext {
        spec,
        kernel_report: None,
        status,
    };
    let name = phase.id();
    match phase.run(&mut ctx) {
        Ok(message) => {
            println!("{name} ok: {message}");
            ExitCode::SUCCESS
        }
        Err(f) => {
            eprintln!("{name} FAILED: {}\n  what to do: {}", f.message, f.hint);
            ExitCode::from(1)
        }
    }
}

/// `kina-init pod-network-check`: two scratch pods on the node's CNI
/// network, attached, pinged and detached as containerd would.
#[cfg(target_os = "linux")]
fn pod_network_check(args: &[String]) -> ExitCode {
    use kina_init::pod_check::{CNI_BIN_DIRS, default_conf, run_check};
    let json = switch(args, "--json");
    let conf = option(args, "--conf").map_or_else(default_conf, std::path::PathBuf::from);
    let dirs: Vec<std::path::PathBuf> = CNI_BIN_DIRS.iter().map(std::path::PathBuf::from).collect();
    match run_check(&conf, &dirs) {
        Ok(report) => {
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(e) => eprintln!("kina-init pod-network-check: {e}"),
                }
            } else {
                print!("{}", report.render());
            }
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("kina-init pod-network-check: {e}");
            ExitCode::from(2)
        }
    }
}

/// `kina-init pod attach|detach NAME`: a scratch pod on the node's CNI
/// network that stays until detached (pod traffic between nodes).
#[cfg(target_os = "linux")]
fn scratch_pod(args: &[String]) -> ExitCode {
    use kina_init::pod_check::{
        CNI_BIN_DIRS, SCRATCH_POD_DIR, attach_pod, default_conf, detach_pod,
    };
    let conf = option(args, "--conf").map_or_else(default_conf, std::path::PathBuf::from);
    let dirs: Vec<std::path::PathBuf> = CNI_BIN_DIRS.iter().map(std::path::PathBuf::from).collect();
    let state = std::path::Path::new(SCRATCH_POD_DIR);
    let result = match (args.first().map(String::as_str), args.get(1)) {
        (Some("attach"), Some(name)) => attach_pod(&conf, &dirs, name, state).and_then(|pod| {
            serde_json::to_string(&pod)
                .map(|text| println!("{text}"))
                .map_err(|e| e.to_string())
        }),
        (Some("detach"), Some(name)) => detach_pod(&conf, &dirs, name, state),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kina-init pod: {e}");
            ExitCode::from(1)
        }
    }
}

/// `kina-init cri pull IMAGE | images`: containerd's CRI asked as the
/// kubelet asks it (`kina_init::cri`). Exit 1 when the CRI refuses.
#[cfg(target_os = "linux")]
fn cri(args: &[String]) -> ExitCode {
    use kina_init::cri::{CriClient, SOCKET, render_images};
    let json = switch(args, "--json");
    let socket = std::path::Path::new(option(args, "--socket").unwrap_or(SOCKET));
    let pull = match (args.first().map(String::as_str), args.get(1)) {
        (Some("pull"), Some(image)) if !image.starts_with("--") => Some(image.as_str()),
        (Some("images"), _) => None,
        _ => {
            eprintln!("kina-init cri: name `pull IMAGE` or `images`\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = CriClient::connect(socket)
        .map_err(|e| e.to_string())
        .and_then(|mut client| match pull {
            Some(image) => {
                let pulled = client.pull(image).map_err(|e| e.to_string())?;
                if json {
                    serde_json::to_string_pretty(&pulled).map_err(|e| e.to_string())
                } else {
                    Ok(format!(
                        "pulled {} as {}\n{}",
                        pulled.image,
                        pulled.image_ref,
                        render_images(&[pulled.status]).trim_end()
                    ))
                }
            }
            None => {
                let images = client.images().map_err(|e| e.to_string())?;
                if json {
                    serde_json::to_string_pretty(&images).map_err(|e| e.to_string())
                } else {
                    Ok(render_images(&images).trim_end().to_string())
                }
            }
        });
    match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kina-init cri: {e}");
            ExitCode::from(1)
        }
    }
}

/// `kina-init images import -|ARCHIVE`: an OCI image archive into
/// containerd, as `ctr images import` puts it there (`kina_init::image_import`),
/// into the k8s.io namespace and the CRI's snapshotter unless told
/// otherwise. `kina load` streams archives to it over the exec channel.
#[cfg(target_os = "linux")]
fn images(args: &[String]) -> ExitCode {
    use kina_contract::containerd_config::{CONFIG_PATH, cri_snapshotter};
    use kina_init::image_import::{Importer, render};
    let Some("import") = args.first().map(String::as_str) else {
        eprintln!("kina-init images: name `import -` or `import ARCHIVE`\n{USAGE}");
        return ExitCode::from(2);
    };
    // The operands: what is neither an option nor an option's value.
    let takes_value = ["--socket", "--namespace", "--snapshotter"];
    let mut operands = Vec::new();
    let mut rest = args[1..].iter();
    while let Some(arg) = rest.next() {
        if takes_value.contains(&arg.as_str()) {
            rest.next();
        } else {
            operands.push(arg.clone());
        }
    }
    let source = match operands.as_slice() {
        [source] => source.clone(),
        _ => {
            eprintln!(
                "kina-init images import: name one archive, or - for standard input\n{USAGE}"
            );
            return ExitCode::from(2);
        }
    };
    let socket = std::path::Path::new(
        option(args, "--socket").unwrap_or(kina_init::containerd_socket::SOCKET),
    );
    let namespace = option(args, "--namespace").unwrap_or("k8s.io");
    let result = (|| {
        let snapshotter = match option(args, "--snapshotter") {
            Some(name) => name.to_string(),
            None => {
                let config = std::fs::read_to_string(CONFIG_PATH)
                    .map_err(|e| format!("reading {CONFIG_PATH} for the CRI's snapshotter (or pass --snapshotter): {e}"))?;
                cri_snapshotter(&config)?
            }
        };
        let mut importer =
            Importer::connect(socket, namespace, &snapshotter).map_err(|e| e.to_string())?;
        let imported = if source == "-" {
            importer.import_archive(std::io::stdin().lock())
        } else {
            let file =
                std::fs::File::open(&source).map_err(|e| format!("opening {source}: {e}"))?;
            importer.import_archive(std::io::BufReader::new(file))
        }
        .map_err(|e| e.to_string())?;
        importer.finish().map_err(|e| e.to_string())?;
        Ok::<_, String>(render(&imported, &snapshotter))
    })();
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kina-init images import: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn images(_args: &[String]) -> ExitCode {
    eprintln!("kina-init images runs inside a Linux node");
    ExitCode::from(2)
}

#[cfg(not(target_os = "linux"))]
fn cri(_args: &[String]) -> ExitCode {
    eprintln!("kina-init cri runs inside a Linux node");
    ExitCode::from(2)
}

#[cfg(not(target_os = "linux"))]
fn scratch_pod(_args: &[String]) -> ExitCode {
    eprintln!("kina-init pod runs inside a Linux node");
    ExitCode::from(2)
}

#[cfg(not(target_os = "linux"))]
fn pod_network_check(_args: &[String]) -> ExitCode {
    eprintln!("kina-init pod-network-check runs inside a Linux node");
    ExitCode::from(2)
}

/// No arguments: kina-init is a node's init (the image's entrypoint).
#[cfg(target_os = "linux")]
fn boot() -> ExitCode {
    if kina_init::first_stage::is_first_stage() {
        kina_init::first_stage::run();
        return ExitCode::from(1);
    }
    kina_init::first_stage::answer_probe_as_init();
    kina_init::pid1::run()
}

#[cfg(not(target_os = "linux"))]
fn boot() -> ExitCode {
    eprintln!("kina-init boots Linux nodes only");
    ExitCode::from(2)
}

#[cfg(not(target_os = "linux"))]
fn phase(_args: &[String]) -> ExitCode {
    eprintln!("kina-init phase runs inside a Linux node");
    ExitCode::from(2)
}

#[cfg(not(target_os = "linux"))]
fn check_kernel(_args: &[String]) -> ExitCode {
    eprintln!("kina-init check-kernel runs inside a Linux node");
    ExitCode::from(2)
}
