//! The offline engine against real kernel configs (Apple containerization's
//! and Debian's cloud kernels), pinned by URL and sha256 in
//! `kina_tests::reference_inputs` and fetched at test time.

// Integration test: helpers outside #[test] functions fail the test by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kina_contract::kernel::report::Verdict;
use kina_contract::kernel::{KernelConfig, Presence, ProfileSet, check};

fn reference_config(name: &str) -> KernelConfig {
    let bytes = kina_tests::fetch_reference_input(name).unwrap_or_else(|e| panic!("{e:#}"));
    KernelConfig::from_bytes(&bytes, name).unwrap()
}

fn verdicts(config: &KernelConfig, profiles: &[&str]) -> Vec<(String, Verdict)> {
    let set = ProfileSet::shipped().unwrap();
    let names: Vec<String> = profiles.iter().map(|s| s.to_string()).collect();
    check(&set, &names, Some(config), None)
        .unwrap()
        .profiles
        .into_iter()
        .map(|p| (p.name, p.verdict))
        .collect()
}

#[test]
fn apples_containerization_arm64_kernel_fails_cilium_on_bpf_jit_and_says_what_to_do() {
    let config = reference_config("apple-containerization-arm64.config");
    let set = ProfileSet::shipped().unwrap();
    let report = check(&set, &["cilium".into()], Some(&config), None).unwrap();
    let cilium = &report.profiles[0];
    assert_eq!(cilium.verdict, Verdict::Fail);
    let missing: Vec<String> = cilium.missing().map(|o| o.config_names()).collect();
    assert!(
        missing.contains(&"CONFIG_BPF_JIT".to_string()),
        "{missing:?}"
    );
    let text = report.render(&["ptp".into()]);
    assert!(
        text.contains("CONFIG_BPF_JIT") && text.contains("way out") && text.contains("ptp"),
        "{text}"
    );
}

#[test]
fn apples_kernels_have_no_module_support_so_nothing_is_loaded() {
    for name in [
        "apple-containerization-arm64.config",
        "apple-containerization-x86_64.config",
    ] {
        let config = reference_config(name);
        assert!(!config.modules_supported(), "{name}");
        let set = ProfileSet::shipped().unwrap();
        let report = check(&set, &["ptp".into()], Some(&config), None).unwrap();
        assert_eq!(report.modules_supported, Some(false));
        assert!(
            report.profiles[0]
                .options
                .iter()
                .all(|o| o.presence != Presence::Module),
            "{name}: no option can be a module"
        );
    }
}

#[test]
fn debians_cloud_kernels_pass_kubernetes_ptp_and_bridge() {
    for name in [
        "debian-6.1.0-56-cloud-amd64.config",
        "debian-6.1.0-56-cloud-arm64.config",
    ] {
        let config = reference_config(name);
        assert!(config.modules_supported());
        for (profile, verdict) in verdicts(&config, &["kubernetes-base", "ptp", "bridge"]) {
            assert_eq!(verdict, Verdict::Pass, "{name}: {profile}");
        }
        // br_netfilter is a module there: the node must load it.
        let set = ProfileSet::shipped().unwrap();
        let report = check(&set, &["bridge".into()], Some(&config), None).unwrap();
        let brnf = report.profiles[0]
            .options
            .iter()
            .find(|o| o.symbols == ["BRIDGE_NETFILTER"])
            .unwrap();
        assert_eq!(brnf.presence, Presence::Module);
        assert_eq!(brnf.modules, ["br_netfilter"]);
    }
}

#[test]
fn json_reports_have_stable_field_names() {
    let config = reference_config("debian-6.1.0-56-cloud-amd64.config");
    let set = ProfileSet::shipped().unwrap();
    let report = check(&set, &["ptp".into()], Some(&config), None).unwrap();
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["profiles"][0]["name"], "ptp");
    assert_eq!(json["profiles"][0]["verdict"], "pass");
    let veth = json["profiles"][0]["options"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["symbols"][0] == "VETH")
        .unwrap();
    assert_eq!(veth["presence"], "module");
    assert!(veth["evidence"].as_str().unwrap().starts_with("config:"));
}
