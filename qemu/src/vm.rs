//! The QEMU command line for a node, and the running VM.
//!
//! One shape for both architectures: virtio-pci devices (q35 on amd64,
//! `virt` on arm64), the serial console into a log file, the root disk as
//! virtio-blk, one virtio-net interface, and the exec channel as a named
//! virtio-serial port backed by a unix socket on the host. `-no-reboot`
//! turns a guest reboot or panic into QEMU exiting, so a dead node is never
//! a VM spinning in a reboot loop.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use kina_builder::platform::Arch;
use kina_contract::initramfs::EXEC_PORT_NAME;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// A host port QEMU's user network forwards to the node: kina's API
/// server forward and kind's `extraPortMappings`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostForward {
    /// `tcp` or `udp`, the two QEMU's `hostfwd` knows.
    pub protocol: ForwardProtocol,
    /// The host address to listen on (kind's `listenAddress`).
    pub address: std::net::Ipv4Addr,
    pub host_port: u16,
    pub node_port: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForwardProtocol {
    Tcp,
    Udp,
}

impl HostForward {
    /// TCP from 127.0.0.1:`host_port`.
    pub fn loopback_tcp(host_port: u16, node_port: u16) -> Self {
        Self {
            protocol: ForwardProtocol::Tcp,
            address: std::net::Ipv4Addr::LOCALHOST,
            host_port,
            node_port,
        }
    }

    fn hostfwd(&self) -> String {
        let protocol = match self.protocol {
            ForwardProtocol::Tcp => "tcp",
            ForwardProtocol::Udp => "udp",
        };
        format!(
            "hostfwd={protocol}:{}:{}-:{}",
            self.address, self.host_port, self.node_port
        )
    }
}

/// How the node's eth0 is attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetAttach {
    /// QEMU's user-mode network: no host privileges, the node is 10.0.2.15
    /// behind 10.0.2.2, and `host_forwards` map host ports to it.
    User { host_forwards: Vec<HostForward> },
    /// No network device (the accelerator probe).
    None,
}

/// A cluster's own L2 segment between QEMU nodes on one host: each node's
/// second NIC is a QEMU socket backend on a UDP multicast group bound to
/// loopback, so every frame one node sends reaches the others and nothing
/// leaves the host. It needs no privileges (no bridge, tap or namespace),
/// and the group and port are the cluster's own, so clusters never see
/// each other's frames.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Segment {
    pub group: std::net::Ipv4Addr,
    pub port: u16,
    /// This node's MAC on the segment (unique within the cluster).
    pub mac: String,
}

#[derive(Clone, Debug)]
pub struct VmConfig {
    pub arch: Arch,
    pub accel: Accel,
    pub cpus: u32,
    pub memory_mib: u32,
    pub kernel: PathBuf,
    /// `None` for a kernel with everything built in, which mounts the root
    /// disk itself and starts kina-init as `init=`.
    pub initramfs: Option<PathBuf>,
    /// The root disk; `None` for the probe of a kernel booted with an
    /// initramfs.
    pub disk: Option<RootDisk>,
    pub cmdline: String,
    pub console_log: PathBuf,
    /// The exec channel's socket; `None` for the probe.
    pub exec_socket: Option<PathBuf>,
    pub net: NetAttach,
    /// The cluster segment, the guest's second NIC (eth1).
    pub segment: Option<Segment>,
}

/// The node's root disk as the VM sees it.
#[derive(Clone, Debug)]
pub struct RootDisk {
    pub path: PathBuf,
    /// The accelerator probe of a kernel booted with no initramfs boots the
    /// node's own disk and must not change it.
    pub read_only: bool,
}

/// Where kina-init sits on every node image: the initramfs's first stage
/// hands over to it, and a kernel booted with no initramfs starts it as
/// `init=`.
pub const KINA_INIT_IN_IMAGE: &str = "/usr/local/bin/kina-init";

/// The serial console device the kernel writes to on each architecture.
pub fn console_device(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "ttyS0",
        Arch::Arm64 => "ttyAMA0",
    }
}

/// The QEMU program and arguments for `cfg`.
pub fn command_line(cfg: &VmConfig) -> (String, Vec<String>) {
    let (program, machine) = match cfg.arch {
        Arch::Amd64 => ("qemu-system-x86_64", "q35"),
        Arch::Arm64 => ("qemu-system-aarch64", "virt"),
    };
    let cpu = match (cfg.accel, cfg.arch) {
        (Accel::Kvm, _) => "host",
        // Not `max` on amd64: QEMU's TCG emulation of the newest x86
        // features is young (AVX arrived in 7.2), and a guest kernel using
        // them crashed under it here (an invalid opcode in enqueue_timer).
        // Nehalem (x86-64-v2) covers what Debian's kernel and userland use.
        (Accel::Tcg, Arch::Amd64) => "Nehalem",
        (Accel::Tcg, Arch::Arm64) => "max",
    };
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    push(&[
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ]);
    push(&["-machine", machine]);
    match cfg.accel {
        Accel::Kvm => push(&["-accel", "kvm"]),
        // One host thread for all vCPUs. With a thread per vCPU (QEMU's
        // default), Debian's kernel died under TCG here with "Oops: int3"
        // (in sched_clock_cpu at boot, in get_random_u64 later): a vCPU
        // ran code another vCPU was live-patching (static keys), which
        // multi-threaded TCG does not keep coherent on QEMU 7.2.
        Accel::Tcg => push(&["-accel", "tcg,thread=single"]),
    }
    push(&["-cpu", cpu]);
    push(&[
        "-smp",
        &cfg.cpus.to_string(),
        "-m",
        &format!("{}M", cfg.memory_mib),
    ]);
    push(&["-kernel", &cfg.kernel.display().to_string()]);
    if let Some(initramfs) = &cfg.initramfs {
        push(&["-initrd", &initramfs.display().to_string()]);
    }
    push(&["-append", &cfg.cmdline]);
    push(&[
        "-chardev",
        &format!("file,id=console,path={}", cfg.console_log.display()),
        "-serial",
        "chardev:console",
    ]);
    if let Some(disk) = &cfg.disk {
        let access = if disk.read_only {
            "readonly=on"
        } else {
            "discard=unmap"
        };
        push(&[
            "-drive",
            &format!(
                "file={},format=raw,if=none,id=root,{access}",
                disk.path.display()
            ),
            "-device",
            "virtio-blk-pci,drive=root",
        ]);
    }
    match &cfg.net {
        NetAttach::User { host_forwards } => {
            let mut netdev = "user,id=net0".to_string();
            for forward in host_forwards {
                netdev.push(',');
                netdev.push_str(&forward.hostfwd());
            }
            push(&["-netdev", &netdev, "-device", "virtio-net-pci,netdev=net0"]);
        }
        NetAttach::None => {}
    }
    if let Some(segment) = &cfg.segment {
        // After net0, so the guest enumerates it second: eth1.
        push(&[
            "-netdev",
            &format!(
                "socket,id=net1,mcast={}:{},localaddr=127.0.0.1",
                segment.group, segment.port
            ),
            "-device",
            &format!("virtio-net-pci,netdev=net1,mac={}", segment.mac),
        ]);
    }
    if let Some(sock) = &cfg.exec_socket {
        push(&[
            "-chardev",
            &format!("socket,id=exec,path={},server=on,wait=off", sock.display()),
            "-device",
            "virtio-serial-pci",
            "-device",
            &format!("virtserialport,chardev=exec,name={EXEC_PORT_NAME}"),
        ]);
    }
    (program.to_string(), a)
}

/// The kernel command line of a node booted from `/dev/vda`. With an
/// initramfs its first stage reads `root=` and mounts the disk; without
/// one (`direct`) the kernel mounts it and starts kina-init as `init=`.
///
/// Under TCG the guest's CPU is emulated: its loads are checked against the
/// guest's page tables in software before they happen, and it has no
/// out-of-order execution of its own, which is what the kernel's
/// speculative-execution defences are built against (Meltdown's page table
/// isolation, which reloads CR3 and so flushes TCG's software TLB at every
/// system call; retpolines; buffer clearing). There they only cost time:
/// `mitigations=off` took 0.5–0.8 s off a 7 s boot to containerd ready.
/// Under KVM the guest runs on the real CPU, and the kernel keeps its
/// defaults.
pub fn node_cmdline(arch: Arch, direct: bool, accel: Accel) -> String {
    let init = if direct {
        format!(" init={KINA_INIT_IN_IMAGE}")
    } else {
        String::new()
    };
    let mitigations = match accel {
        Accel::Tcg => " mitigations=off",
        Accel::Kvm => "",
    };
    format!(
        "console={} root=/dev/vda rootfstype=ext4 rw{init} panic=-1 quiet loglevel=4{mitigations}",
        console_device(arch)
    )
}

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error(
        "cannot run {program}: {source}; install QEMU (Debian: qemu-system-x86 / qemu-system-arm)"
    )]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    /// QEMU checks its devices before it daemonizes: a bad configuration
    /// ends here, with QEMU's own words.
    #[error("{program} failed ({status}): {stderr}")]
    Refused {
        program: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
}

/// Starts QEMU for `cfg` as a child of this process, its own stdio closed.
pub fn spawn(cfg: &VmConfig, stderr_log: &Path) -> Result<Child, VmError> {
    let (program, args) = command_line(cfg);
    let stderr = std::fs::File::create(stderr_log)
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null());
    Command::new(&program)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .map_err(|source| VmError::Spawn { program, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(arch: Arch) -> VmConfig {
        VmConfig {
            arch,
            accel: Accel::Tcg,
            cpus: 2,
            memory_mib: 2048,
            kernel: "/k/vmlinuz".into(),
            initramfs: Some("/k/initramfs".into()),
            disk: Some(RootDisk {
                path: "/n/disk.img".into(),
                read_only: false,
            }),
            cmdline: node_cmdline(arch, false, Accel::Tcg),
            console_log: "/n/console.log".into(),
            exec_socket: Some("/n/exec.sock".into()),
            net: NetAttach::User {
                host_forwards: vec![
                    HostForward::loopback_tcp(16443, 6443),
                    HostForward {
                        protocol: ForwardProtocol::Udp,
                        address: std::net::Ipv4Addr::UNSPECIFIED,
                        host_port: 5353,
                        node_port: 53,
                    },
                ],
            },
            segment: None,
        }
    }

    #[test]
    fn a_cluster_segment_is_a_second_nic_on_a_loopback_multicast_socket() {
        let mut c = cfg(Arch::Amd64);
        c.segment = Some(Segment {
            group: "239.255.7.9".parse().unwrap(),
            port: 41234,
            mac: "52:54:00:12:34:56".into(),
        });
        let (_, args) = command_line(&c);
        let line = args.join(" ");
        let user = line.find("netdev=net0").unwrap();
        let segment = line
            .find("-netdev socket,id=net1,mcast=239.255.7.9:41234,localaddr=127.0.0.1 -device virtio-net-pci,netdev=net1,mac=52:54:00:12:34:56")
            .unwrap_or_else(|| panic!("{line}"));
        assert!(user < segment, "the segment must be the second NIC: {line}");
    }

    #[test]
    fn both_architectures_get_virtio_pci_devices_and_their_own_console() {
        let (prog, args) = command_line(&cfg(Arch::Amd64));
        assert_eq!(prog, "qemu-system-x86_64");
        let line = args.join(" ");
        assert!(
            line.contains("-machine q35 -accel tcg,thread=single -cpu Nehalem"),
            "{line}"
        );
        assert!(line.contains("console=ttyS0 root=/dev/vda"), "{line}");
        assert!(
            line.contains("hostfwd=tcp:127.0.0.1:16443-:6443,hostfwd=udp:0.0.0.0:5353-:53"),
            "{line}"
        );
        assert!(
            line.contains("virtserialport,chardev=exec,name=io.kina.exec"),
            "{line}"
        );
        assert!(line.contains("-no-reboot"), "{line}");
        let (prog, args) = command_line(&cfg(Arch::Arm64));
        assert_eq!(prog, "qemu-system-aarch64");
        let line = args.join(" ");
        assert!(
            line.contains("-machine virt -accel tcg,thread=single"),
            "{line}"
        );
        assert!(line.contains("console=ttyAMA0"), "{line}");
    }

    #[test]
    fn a_kernel_with_everything_built_in_boots_without_an_initramfs_into_kina_init() {
        let mut c = cfg(Arch::Arm64);
        c.initramfs = None;
        c.cmdline = node_cmdline(Arch::Arm64, true, Accel::Tcg);
        let (_, args) = command_line(&c);
        let line = args.join(" ");
        assert!(!line.contains("-initrd"), "{line}");
        assert!(
            line.contains(
                "console=ttyAMA0 root=/dev/vda rootfstype=ext4 rw init=/usr/local/bin/kina-init "
            ),
            "{line}"
        );
        assert!(!node_cmdline(Arch::Amd64, false, Accel::Kvm).contains("init="));
        // Speculation defences only where there is a real CPU to speculate.
        assert!(node_cmdline(Arch::Amd64, false, Accel::Tcg).ends_with(" mitigations=off"));
        assert!(!node_cmdline(Arch::Amd64, false, Accel::Kvm).contains("mitigations"));
        // The probe's view of the node's disk cannot change it.
        c.disk = Some(RootDisk {
            path: "/n/disk.img".into(),
            read_only: true,
        });
        let line = command_line(&c).1.join(" ");
        assert!(
            line.contains("file=/n/disk.img,format=raw,if=none,id=root,readonly=on"),
            "{line}"
        );
    }
}
