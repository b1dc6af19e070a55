//! Runtime kernel probes on the machine running the tests (a real Linux
//! kernel), checked against that kernel's own config.

// Integration test: helpers outside #[test] functions fail the test by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kina_contract::kernel::{Presence, ProfileSet, check};
use kina_init::kernel_probe::{LiveProbes, check_running_kernel, running_kernel_config};

const PROFILES: [&str; 6] = [
    "kubernetes-base",
    "ptp",
    "bridge",
    "flannel-vxlan",
    "cilium",
    "cilium-kpr",
];

#[test]
fn every_conclusive_probe_agrees_with_the_running_kernels_config() {
    let config = running_kernel_config()
        .expect("this kernel exposes no config (/proc/config.gz or /boot/config-$(uname -r)); the comparison needs one");
    let set = ProfileSet::shipped().unwrap();
    let profiles: Vec<String> = PROFILES.iter().map(|s| s.to_string()).collect();
    let (live, _) = check_running_kernel(&profiles, &LiveProbes::SCRATCH).unwrap();
    let offline = check(&set, &profiles, Some(&config), None).unwrap();
    let mut conclusive = 0;
    for (lp, op) in live.profiles.iter().zip(&offline.profiles) {
        for (l, o) in lp.options.iter().zip(&op.options) {
            if !l.evidence.starts_with("probe:") {
                continue;
            }
            conclusive += 1;
            match l.presence {
                Presence::Present => assert!(
                    matches!(o.presence, Presence::Builtin | Presence::Module),
                    "{}: probe found {} ({}) but the config says {:?}",
                    lp.name,
                    l.config_names(),
                    l.evidence,
                    o.presence
                ),
                // Not loaded yet, its module file on the disk.
                Presence::Module => assert_eq!(
                    o.presence,
                    Presence::Module,
                    "{}: probe found {} as a module ({}) but the config says {:?}",
                    lp.name,
                    l.config_names(),
                    l.evidence,
                    o.presence
                ),
                Presence::Absent => assert_eq!(
                    o.presence,
                    Presence::Absent,
                    "{}: probe says {} is absent ({}) but the config has it",
                    lp.name,
                    l.config_names(),
                    l.evidence
                ),
                other => panic!("a probe result is present, a module or absent, got {other:?}"),
            }
        }
    }
    assert!(conclusive >= 15, "only {conclusive} options were probed");
}

#[test]
fn without_privileges_probes_fall_back_to_the_config_and_say_so() {
    let status = std::process::Command::new("setpriv")
        .arg("--version")
        .output();
    assert!(
        status.is_ok(),
        "setpriv (util-linux) is needed to drop privileges"
    );
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_kina-init"))
        .args(["check-kernel", "--profile", "ptp", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let veth = report["profiles"][0]["options"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["symbols"][0] == "VETH")
        .unwrap();
    let evidence = veth["evidence"].as_str().unwrap();
    let release = nix::sys::utsname::uname().unwrap();
    let modules_dep = std::path::Path::new("/lib/modules")
        .join(release.release())
        .join("modules.dep");
    let veth_module = std::fs::read_to_string(&modules_dep)
        .is_ok_and(|dep| dep.lines().any(|l| l.contains("/veth.ko")));
    if std::path::Path::new("/sys/module/veth").is_dir() {
        // A loaded veth module answers without privileges.
        assert!(
            evidence.starts_with("probe:") && evidence.contains("/sys/module/veth"),
            "{evidence}"
        );
    } else if veth_module {
        // So does its module file, not loaded yet.
        assert_eq!(veth["presence"], "module", "{veth}");
        assert!(
            evidence.starts_with("probe:veth not loaded yet") && evidence.contains("veth.ko"),
            "{evidence}"
        );
    } else {
        assert!(
            evidence.starts_with("config:") && evidence.contains("probe could not verify"),
            "an unprivileged veth probe must fall back to the config, labelled: {evidence}"
        );
    }
}

#[test]
fn a_link_probe_in_the_callers_namespace_deletes_its_link_again() {
    // The thread moves to a namespace of its own first, so the probe's
    // "own namespace" is this test's and not the machine's.
    let (report, links) = std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("unshare(CLONE_NEWNET): the test runs as root, as CI does");
        // The link itself, even where a loaded veth module would answer.
        let outcome = kina_init::kernel_probe::add_link_probe(
            "veth",
            kina_init::kernel_probe::LinkProbeNamespace::Own,
        );
        // The thread's own view of its namespace's links.
        let links = std::fs::read_to_string("/proc/thread-self/net/dev").unwrap();
        (outcome, links)
    })
    .join()
    .unwrap();
    assert!(
        matches!(&report, kina_contract::kernel::ProbeOutcome::Present(what) if !what.contains("failed")),
        "{report:?}"
    );
    assert!(
        links.contains("lo:") && !links.contains(kina_init::kernel_probe::PROBE_LINK),
        "the probe's link is still there:\n{links}"
    );
}
