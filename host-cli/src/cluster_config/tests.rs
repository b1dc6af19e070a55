//! The configs here are kind's own examples, written out from kind's
//! documentation (site/content/docs/user/configuration.md,
//! site/static/examples/*.yaml, site/content/docs/user/kind-example-config.yaml)
//! and kind's decoding test data (pkg/internal/apis/config/encoding/testdata),
//! plus configs made to hit each check.

use kina_contract::cidr::Ipv4Cidr;
use serde_json::json;
use serde_norway::Value as Yaml;

use super::documents::{edit_distance, fields_of, nearest};
use super::provider_refusals::is_kindest_image;
use super::*;

/// The text with the indentation common to its lines removed, so configs
/// can be indented like the code around them.
fn yaml(text: &str) -> String {
    let indent = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    text.lines()
        .map(|l| l.get(indent..).unwrap_or("").trim_end())
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn parse(text: &str) -> ClusterConfig {
    match ClusterConfig::parse(&yaml(text)) {
        Ok(c) => c,
        Err(errors) => panic!("config refused:{}", list(&errors)),
    }
}

fn errors(text: &str) -> Vec<FieldError> {
    match ClusterConfig::parse(&yaml(text)) {
        Ok(c) => panic!("config accepted: {c:?}"),
        Err(errors) => errors,
    }
}

/// The one error at `path`, whose message must contain every `words`.
fn error_at(text: &str, path: &str, words: &[&str]) -> FieldError {
    let all = errors(text);
    let at: Vec<&FieldError> = all.iter().filter(|e| e.path == path).collect();
    let [e] = at.as_slice() else {
        panic!("expected one error at {path}, got:{}", list(&all));
    };
    for w in words {
        assert!(e.message.contains(w), "{e} lacks {w:?}");
    }
    (*e).clone()
}

const HEAD: &str = "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n";

fn cluster(body: &str) -> String {
    format!("{HEAD}{}", yaml(body))
}

// --- kind's examples -------------------------------------------------------

#[test]
fn the_minimal_config_gets_kinds_defaults() {
    let c = parse(
        "
        kind: Cluster
        apiVersion: kind.x-k8s.io/v1alpha4
        ",
    );
    assert_eq!(c.cluster.nodes, vec![Node::default()]);
    assert_eq!(c.cluster.nodes[0].role, Role::ControlPlane);
    assert_eq!(c.cluster.nodes[0].image, None);
    let n = &c.cluster.networking;
    assert_eq!(n.ip_family, IpFamily::Ipv4);
    assert_eq!(n.api_server_address, "127.0.0.1");
    assert_eq!(n.api_server_port, 0);
    assert_eq!(n.pod_subnet, "10.244.0.0/16");
    assert_eq!(n.service_subnet, "10.96.0.0/16");
    assert_eq!(n.kube_proxy_mode, KubeProxyMode::Iptables);
    assert!(!n.disable_default_cni);
    assert_eq!(n.dns_search, None);
    assert_eq!(c.name(), "kina");
    assert_eq!(c.kina, KinaSettings::default());
    assert_eq!(
        c.node_resources(0),
        NodeResources {
            cpus: 2,
            memory_mib: 2048
        }
    );
    assert_eq!(combined_patches(&c, 0), (vec![], vec![]));
    assert_eq!(c, ClusterConfig::default());
    assert!(c.qemu_refusals().is_empty());
    assert!(c.apple_refusals().is_empty());
}

#[test]
fn kinds_multi_node_example() {
    // configuration.md, "Nodes", comments included.
    let c = parse(
        r#"
        kind: Cluster
        apiVersion: kind.x-k8s.io/v1alpha4
        # One control plane node and three "workers".
        #
        # While these will not add more real compute capacity and
        # have limited isolation, this can be useful for testing
        # rolling updates etc.
        #
        # The API-server and other control plane components will be
        # on the control-plane node.
        #
        # You probably don't need this unless you are testing Kubernetes itself.
        nodes:
        - role: control-plane
        - role: worker
        - role: worker
        - role: worker
        "#,
    );
    let roles: Vec<Role> = c.cluster.nodes.iter().map(|n| n.role.clone()).collect();
    assert_eq!(
        roles,
        [Role::ControlPlane, Role::Worker, Role::Worker, Role::Worker]
    );
    assert_eq!(
        c.cluster.nodes[3],
        Node {
            role: Role::Worker,
            ..Node::default()
        }
    );
}

#[test]
fn kinds_name_and_node_image_examples() {
    let c = parse(
        "
        kind: Cluster
        apiVersion: kind.x-k8s.io/v1alpha4
        name: app-1-cluster
        nodes:
        - role: control-plane
          image: kindest/node:v1.16.4@sha256:b91a2c2317a000f3a783489dfb755064177dbc3a0b2f4147d50f04825d016f55
        - role: worker
          image: kindest/node:v1.16.4@sha256:b91a2c2317a000f3a783489dfb755064177dbc3a0b2f4147d50f04825d016f55
        ",
    );
    assert_eq!(c.name(), "app-1-cluster");
    assert_eq!(
        c.cluster.nodes[1].image.as_deref(),
        Some(
            "kindest/node:v1.16.4@sha256:b91a2c2317a000f3a783489dfb755064177dbc3a0b2f4147d50f04825d016f55"
        )
    );
}

#[test]
fn kinds_extra_mounts_example() {
    // site/static/examples/config-with-mounts.yaml
    let c = parse(
        "
        kind: Cluster
        apiVersion: kind.x-k8s.io/v1alpha4
        nodes:
        - role: control-plane
          # add a mount from /path/to/my/files on the host to /files on the node
          extraMounts:
          - hostPath: /path/to/my/files
            containerPath: /files
          #
          # add an additional mount leveraging *all* of the config fields
          #
          # generally you only need the two fields above ...
          #
          - hostPath: /path/to/my/other-files/
            containerPath: /other-files
            # optional: if set, the mount is read-only.
            # default false
            readOnly: true
            # optional: if set, the mount needs SELinux relabeling.
            # default false
            selinuxRelabel: false
            # optional: set propagation mode (None, HostToContainer or Bidirectional)
            # see https://kubernetes.io/docs/concepts/storage/volumes/#mount-propagation
            # default None
            #
            # WARNING: You very likely do not need this field.
            propagation: None
        ",
    );
    assert_eq!(
        c.cluster.nodes[0].extra_mounts,
        vec![
            Mount {
                host_path: "/path/to/my/files".into(),
                container_path: "/files".into(),
                ..Mount::default()
            },
            Mount {
                host_path: "/path/to/my/other-files/".into(),
                container_path: "/other-files".into(),
                read_only: true,
                selinux_relabel: false,
                propagation: Propagation::None,
            },
        ]
    );
}

#[test]
fn kinds_port_mapping_examples() {
    // site/static/examples/config-with-port-mapping.yaml
    let c = parse(
        r#"
        kind: Cluster
        apiVersion: kind.x-k8s.io/v1alpha4
        nodes:
        - role: control-plane
          # port forward 80 on the host to 80 on this node
          extraPortMappings:
          - containerPort: 80
            hostPort: 80
            # optional: set the bind address on the host
            # 0.0.0.0 is the current default
            listenAddress: "127.0.0.1"
            # optional: set the protocol to one of TCP, UDP, SCTP.
            # TCP is the default
            protocol: TCP
        "#,
    );
    assert_eq!(
        c.cluster.nodes[0].extra_port_mappings,
        vec![PortMapping {
            container_port: 80,
            host_port: 80,
            listen_address: "127.0.0.1".into(),
            protocol: Protocol::Tcp,
        }]
    );
    // configuration.md, "NodePort with Port Mappings": kind's defaults.
    let c = parse(
        "
        kind: Cluster
        apiVersion: kind.x-k8s.io/v1alpha4
        nodes:
        - role: control-plane
          extraPortMappings:
          - containerPort: 30950
            hostPort: 80
        ",
    );
    let m = &c.cluster.nodes[0].extra_port_mappings[0];
    assert_eq!((m.container_port, m.host_port), (30950, 80));
    assert_eq!(m.listen_address, "0.0.0.0");
    assert_eq!(m.protocol, Protocol::Tcp);
}

#[test]
fn kinds_extra_labels_example() {
    let c = parse(
        "
        kind: Cluster
        apiVersion: kind.x-k8s.io/v1alpha4
        nodes:
        - role: control-plane
        - role: worker
          extraPortMappings:
          - containerPort: 30950
            hostPort: 80
          labels:
            tier: frontend
        - role: worker
          labels:
            tier: backend
        ",
    );
    assert!(c.cluster.nodes[0].labels.is_empty());
    assert_eq!(c.cluster.nodes[1].labels["tier"], "frontend");
    assert_eq!(c.cluster.nodes[2].labels["tier"], "backend");
    assert_eq!(c.cluster.nodes[1].extra_port_mappings[0].host_port, 80);
}

#[test]
fn kinds_port_and_mount_test_data_with_a_relative_host_path() {
    // pkg/internal/apis/config/encoding/testdata/v1alpha4/valid-port-and-mount.yaml
    let c = parse(
        "
        kind: Cluster
        apiVersion: kind.x-k8s.io/v1alpha4
        nodes:
        - role: control-plane
          # map an extra port
          extraPortMappings:
          - hostPort: 80
            containerPort: 80
          # mount an extra path from the host
          extraMounts:
          - hostPath: ./foo
            containerPath: /bar
        ",
    );
    let mount = &c.cluster.nodes[0].extra_mounts[0];
    assert_eq!(mount.host_path, "./foo");
    assert_eq!(
        mount.absolute_host_path(Path::new("/home/me/project")),
        Path::new("/home/me/project/./foo")
    );
    assert_eq!(
        Mount {
            host_path: "/abs".into(),
            ..Mount::default()
        }
        .absolute_host_path(Path::new("/elsewhere")),
        Path::new("/abs")
    );
}

#[test]
fn kinds_feature_gates_and_runtime_config_examples() {
    let c = parse(
        r#"
        kind: Cluster
        apiVersion: kind.x-k8s.io/v1alpha4
        featureGates:
          # any feature gate can be enabled here with "Name": true
          # or disabled here with "Name": false
          # not all feature gates are tested, however
          "CSIMigration": true
        runtimeConfig:
          "api/alpha": "false"
          "apps/v1beta2": "true"
        "#,
    );
    assert_eq!(
        c.cluster.feature_gates,
        BTreeMap::from([("CSIMigration".to_string(), true)])
    );
    assert_eq!(
        c.cluster.runtime_config,
        BTreeMap::from([
            ("api/alpha".to_string(), "false".to_string()),
            ("apps/v1beta2".to_string(), "true".to_string()),
        ])
    );
    // kind's YAML library reads unquoted scalars into string fields.
    let c = parse(
        "
        kind: Cluster
        apiVersion: kind.x-k8s.io/v1alpha4
        runtimeConfig:
          api/alpha: false
        nodes:
        - labels:
            ingress-ready: true
            rack: 7
        ",
    );
    assert_eq!(c.cluster.runtime_config["api/alpha"], "false");
    assert_eq!(c.cluster.nodes[0].labels["ingress-ready"], "true");
    assert_eq!(c.cluster.nodes[0].labels["rack"], "7");
}

#[test]
fn kinds_networking_examples() {
    let c = parse(
        r#"
        kind: Cluster
        apiVersion: kind.x-k8s.io/v1alpha4
        networking:
          # WARNING: It is _strongly_ recommended that you keep this the default
          # (127.0.0.1) for security reasons. However it is possible to change this.
          apiServerAddress: "127.0.0.1"
          # By default the API server listens on a random open port.
          # You may choose a specific port but probably don't need to in most cases.
          # Using a random port makes it easier to spin up multiple clusters.
          apiServerPort: 6443
        "#,
    );
    assert_eq!(c.cluster.networking.api_server_address, "127.0.0.1");
    assert_eq!(c.cluster.networking.api_server_port, 6443);

    let c = parse(&cluster("networking:\n  podSubnet: \"10.244.0.0/16\"\n"));
    assert_eq!(c.cluster.networking.pod_subnet, "10.244.0.0/16");
    let c = parse(&cluster("networking:\n  serviceSubnet: \"10.96.0.0/12\"\n"));
    assert_eq!(c.cluster.networking.service_subnet, "10.96.0.0/12");
    let c = parse(&cluster(
        "
        networking:
          # the default CNI will not be installed
          disableDefaultCNI: true
        ",
    ));
    assert!(c.cluster.networking.disable_default_cni);
    for (mode, want) in [
        ("nftables", KubeProxyMode::Nftables),
        ("ipvs", KubeProxyMode::Ipvs),
        ("none", KubeProxyMode::None),
        ("iptables", KubeProxyMode::Iptables),
    ] {
        let c = parse(&cluster(&format!(
            "networking:\n  kubeProxyMode: \"{mode}\"\n"
        )));
        assert_eq!(c.cluster.networking.kube_proxy_mode, want);
    }
    let c = parse(&cluster("networking:\n  dnsSearch: []\n"));
    assert_eq!(c.cluster.networking.dns_search, Some(vec![]));
}

#[test]
fn kinds_example_config_with_kubeadm_patches() {
    // site/content/docs/user/kind-example-config.yaml
    let c = parse(
        r#"
        # this config file contains all config fields with comments
        # NOTE: this is not a particularly useful config file
        kind: Cluster
        apiVersion: kind.x-k8s.io/v1alpha4
        # patch the generated kubeadm config with some extra settings
        kubeadmConfigPatches:
        - |
          apiVersion: kubelet.config.k8s.io/v1beta1
          kind: KubeletConfiguration
          evictionHard:
            nodefs.available: "0%"
        # patch it further using a JSON 6902 patch
        kubeadmConfigPatchesJSON6902:
        - group: kubeadm.k8s.io
          version: v1beta3
          kind: ClusterConfiguration
          patch: |
            - op: add
              path: /apiServer/certSANs/-
              value: my-hostname
        # 1 control plane node and 3 workers
        nodes:
        # the control plane node config
        - role: control-plane
        # the three workers
        - role: worker
        - role: worker
        - role: worker
        "#,
    );
    assert_eq!(c.cluster.nodes.len(), 4);
    assert_eq!(
        c.cluster.kubeadm_config_patches_json6902[0],
        PatchJson6902 {
            group: "kubeadm.k8s.io".into(),
            version: "v1beta3".into(),
            kind: "ClusterConfiguration".into(),
            patch: "- op: add\n  path: /apiServer/certSANs/-\n  value: my-hostname\n".into(),
        }
    );
    let (merge, json6902) = combined_patches(&c, 2);
    assert_eq!(
        merge,
        vec![json!({
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "evictionHard": {"nodefs.available": "0%"},
        })]
    );
    assert_eq!(
        json6902,
        vec![Json6902Patch {
            group: "kubeadm.k8s.io".into(),
            version: "v1beta3".into(),
            kind: "ClusterConfiguration".into(),
            patch: json!([{"op": "add", "path": "/apiServer/certSANs/-", "value": "my-hostname"}]),
        }]
    );
}

#[test]
fn kinds_node_patch_examples_apply_after_the_clusters() {
    // configuration.md's JoinConfiguration example, kind's
    // valid-kind-workers-patches.yaml test data, and a cluster-level patch.
    let c = parse(
        r#"
        kind: Cluster
        apiVersion: kind.x-k8s.io/v1alpha4
        kubeadmConfigPatches:
        - |
          kind: ClusterConfiguration
          apiServer:
              extraArgs:
                enable-admission-plugins: NodeRestriction,MutatingAdmissionWebhook,ValidatingAdmissionWebhook
        kubeadmConfigPatchesJSON6902:
        - group: kubelet.config.k8s.io
          version: v1beta1
          kind: KubeletConfiguration
          patch: |
            - op: replace
              path: /maxPods
              value: 200
        nodes:
        - role: control-plane
          kubeadmConfigPatches:
          - |
            kind: InitConfiguration
            nodeRegistration:
              kubeletExtraArgs:
                node-labels: "my-label=true"
        - role: worker
          kubeadmConfigPatches:
          - |
            apiVersion: kubeadm.k8s.io/v1beta2
            kind: JoinConfiguration
            nodeRegistration:
              kubeletExtraArgs:
                node-labels: "aqua=gateway"
                authorization-mode: "AlwaysAllow"
        - role: worker
          kubeadmConfigPatchesJSON6902:
          - group: kubelet.config.k8s.io
            version: v1beta1
            kind: KubeletConfiguration
            patch: |
              - op: add
                path: /authentication
                value: {"anonymous": {"enabled": true}}
              - op: add
                path: /tlsCipherSuites
                value: ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256","TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]
        - role: worker
        "#,
    );
    let cluster_merge = json!({
        "kind": "ClusterConfiguration",
        "apiServer": {"extraArgs": {"enable-admission-plugins":
            "NodeRestriction,MutatingAdmissionWebhook,ValidatingAdmissionWebhook"}},
    });
    let cluster_6902 = Json6902Patch {
        group: "kubelet.config.k8s.io".into(),
        version: "v1beta1".into(),
        kind: "KubeletConfiguration".into(),
        patch: json!([{"op": "replace", "path": "/maxPods", "value": 200}]),
    };

    let (merge, json6902) = combined_patches(&c, 0);
    assert_eq!(merge.len(), 2);
    assert_eq!(merge[0], cluster_merge);
    assert_eq!(
        merge[1],
        json!({"kind": "InitConfiguration",
               "nodeRegistration": {"kubeletExtraArgs": {"node-labels": "my-label=true"}}})
    );
    assert_eq!(json6902, vec![cluster_6902.clone()]);

    let (merge, _) = combined_patches(&c, 1);
    assert_eq!(
        merge[1],
        json!({"apiVersion": "kubeadm.k8s.io/v1beta2", "kind": "JoinConfiguration",
               "nodeRegistration": {"kubeletExtraArgs":
                   {"node-labels": "aqua=gateway", "authorization-mode": "AlwaysAllow"}}})
    );

    let (merge, json6902) = combined_patches(&c, 2);
    assert_eq!(merge, vec![cluster_merge.clone()]);
    assert_eq!(json6902.len(), 2);
    assert_eq!(json6902[0], cluster_6902);
    assert_eq!(
        json6902[1].patch,
        json!([
            {"op": "add", "path": "/authentication", "value": {"anonymous": {"enabled": true}}},
            {"op": "add", "path": "/tlsCipherSuites", "value":
                ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]},
        ])
    );

    // The last worker has none of its own; past the nodes, the cluster's.
    assert_eq!(
        combined_patches(&c, 3),
        (vec![cluster_merge.clone()], vec![cluster_6902.clone()])
    );
    assert_eq!(
        combined_patches(&c, 99),
        (vec![cluster_merge], vec![cluster_6902])
    );
}

#[test]
fn a_patch_string_with_several_documents_is_several_patches_in_order() {
    let c = parse(
        "
        kind: Cluster
        apiVersion: kind.x-k8s.io/v1alpha4
        kubeadmConfigPatches:
        - |
          kind: ClusterConfiguration
          etcd:
            local:
              dataDir: /tmp/etcd
          ---
          kind: KubeletConfiguration
          maxPods: 50
          ---
        - |
          ---
          kind: KubeProxyConfiguration
          conntrack:
            maxPerCore: 0
        ",
    );
    let (merge, _) = combined_patches(&c, 0);
    let kinds: Vec<&str> = merge.iter().filter_map(|p| p["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "ClusterConfiguration",
            "KubeletConfiguration",
            "KubeProxyConfiguration"
        ]
    );
    assert_eq!(merge[1]["maxPods"], json!(50));
}

#[test]
fn kinds_containerd_patch_examples() {
    // kind's valid-kind-patches.yaml and kind-with-registry.sh.
    let c = parse(
        r#"
        kind: Cluster
        apiVersion: kind.x-k8s.io/v1alpha4
        containerdConfigPatches:
        # configure a local insecure registry
        - |-
          [plugins."io.containerd.grpc.v1.cri".registry.mirrors."registry:5000"]
        - |-
          [plugins."io.containerd.grpc.v1.cri".registry]
            config_path = "/etc/containerd/certs.d"
        containerdConfigPatchesJSON6902:
        - |
          - op: add
            path: /plugins/io.containerd.grpc.v1.cri/registry/config_path
            value: /etc/containerd/certs.d
        "#,
    );
    assert_eq!(c.cluster.containerd_config_patches.len(), 2);
    assert!(c.cluster.containerd_config_patches[1].contains("config_path"));
    assert_eq!(c.cluster.containerd_config_patches_json6902.len(), 1);
}

#[test]
fn every_field_of_the_schema_is_read() {
    let c = parse(
        r#"
        kind: Cluster
        apiVersion: kind.x-k8s.io/v1alpha4
        name: every-field
        nodes:
        - role: control-plane
          image: kina.local/node:v1.36
          labels:
            tier: frontend
          extraMounts:
          - hostPath: /srv/data
            containerPath: /data
            readOnly: true
            selinuxRelabel: true
            propagation: HostToContainer
          - hostPath: /srv/more
            containerPath: /more
            propagation: Bidirectional
          extraPortMappings:
          - containerPort: 53
            hostPort: 5353
            listenAddress: 127.0.0.2
            protocol: UDP
          - containerPort: 9899
            hostPort: 9899
            listenAddress: "::1"
            protocol: SCTP
          kubeadmConfigPatches:
          - |
            kind: InitConfiguration
          kubeadmConfigPatchesJSON6902:
          - group: kubeadm.k8s.io
            version: v1beta4
            kind: InitConfiguration
            patch: '[{"op": "add", "path": "/x", "value": 1}]'
        - role: worker
        networking:
          ipFamily: ipv4
          apiServerAddress: 0.0.0.0
          apiServerPort: 16443
          podSubnet: 10.200.0.0/16
          serviceSubnet: 10.100.0.0/16
          disableDefaultCNI: true
          kubeProxyMode: ipvs
          dnsSearch: [example.com, corp.example]
        featureGates:
          SomeGate: false
        runtimeConfig:
          api/all: "true"
        kubeadmConfigPatches:
        - |
          kind: ClusterConfiguration
        kubeadmConfigPatchesJSON6902:
        - version: v1
          kind: KubeProxyConfiguration
          patch: |
            - op: remove
              path: /mode
        containerdConfigPatches:
        - |
          version = 2
        containerdConfigPatchesJSON6902:
        - '[{"op": "add", "path": "/debug", "value": {"level": "info"}}]'
        "#,
    );
    let k = &c.cluster;
    assert_eq!(k.name.as_deref(), Some("every-field"));
    let n = &k.nodes[0];
    assert_eq!(n.role, Role::ControlPlane);
    assert_eq!(n.image.as_deref(), Some("kina.local/node:v1.36"));
    assert_eq!(n.labels["tier"], "frontend");
    assert_eq!(
        n.extra_mounts[0],
        Mount {
            host_path: "/srv/data".into(),
            container_path: "/data".into(),
            read_only: true,
            selinux_relabel: true,
            propagation: Propagation::HostToContainer,
        }
    );
    assert_eq!(n.extra_mounts[1].propagation, Propagation::Bidirectional);
    assert_eq!(
        n.extra_port_mappings,
        vec![
            PortMapping {
                container_port: 53,
                host_port: 5353,
                listen_address: "127.0.0.2".into(),
                protocol: Protocol::Udp,
            },
            PortMapping {
                container_port: 9899,
                host_port: 9899,
                listen_address: "::1".into(),
                protocol: Protocol::Sctp,
            },
        ]
    );
    assert_eq!(n.kubeadm_config_patches, ["kind: InitConfiguration\n"]);
    assert_eq!(n.kubeadm_config_patches_json6902[0].version, "v1beta4");
    assert_eq!(k.nodes[1].role, Role::Worker);
    assert_eq!(
        k.networking,
        Networking {
            ip_family: IpFamily::Ipv4,
            api_server_address: "0.0.0.0".into(),
            api_server_port: 16443,
            pod_subnet: "10.200.0.0/16".into(),
            service_subnet: "10.100.0.0/16".into(),
            disable_default_cni: true,
            kube_proxy_mode: KubeProxyMode::Ipvs,
            dns_search: Some(vec!["example.com".into(), "corp.example".into()]),
        }
    );
    assert_eq!(k.feature_gates.get("SomeGate"), Some(&false));
    assert_eq!(k.runtime_config["api/all"], "true");
    assert_eq!(k.kubeadm_config_patches, ["kind: ClusterConfiguration\n"]);
    assert_eq!(
        k.kubeadm_config_patches_json6902[0],
        PatchJson6902 {
            group: String::new(),
            version: "v1".into(),
            kind: "KubeProxyConfiguration".into(),
            patch: "- op: remove\n  path: /mode\n".into(),
        }
    );
    assert_eq!(k.containerd_config_patches, ["version = 2\n"]);
    assert_eq!(
        k.containerd_config_patches_json6902,
        [r#"[{"op": "add", "path": "/debug", "value": {"level": "info"}}]"#]
    );
    assert_eq!(
        c.containerd_patches_json6902(),
        [json!([{"op": "add", "path": "/debug", "value": {"level": "info"}}])]
    );
    let (merge, json6902) = combined_patches(&c, 0);
    assert_eq!(
        merge,
        vec![
            json!({"kind": "ClusterConfiguration"}),
            json!({"kind": "InitConfiguration"})
        ]
    );
    assert_eq!(
        json6902.iter().map(|p| p.kind.as_str()).collect::<Vec<_>>(),
        ["KubeProxyConfiguration", "InitConfiguration"]
    );
    assert_eq!(
        json6902[1].patch,
        json!([{"op": "add", "path": "/x", "value": 1}])
    );
}

#[test]
fn null_and_empty_fields_count_as_unset_as_in_kind() {
    let c = parse(
        r#"
        kind: Cluster
        apiVersion: kind.x-k8s.io/v1alpha4
        name: ""
        featureGates:
        networking:
          kubeProxyMode: ""
          podSubnet: ~
        nodes:
        - role: worker
          image: ""
        - role: control-plane
          extraPortMappings:
          - containerPort: 80
            listenAddress: ""
            protocol: ""
        "#,
    );
    assert_eq!(c.name(), "kina");
    assert_eq!(
        c.cluster.networking.kube_proxy_mode,
        KubeProxyMode::Iptables
    );
    assert_eq!(c.cluster.networking.pod_subnet, "10.244.0.0/16");
    assert_eq!(c.cluster.nodes[0].image, None);
    let m = &c.cluster.nodes[1].extra_port_mappings[0];
    assert_eq!(
        (m.listen_address.as_str(), m.protocol),
        ("0.0.0.0", Protocol::Tcp)
    );
}

#[test]
fn yaml_anchors_and_merge_keys_work_as_in_kind() {
    let c = parse(
        "
        kind: Cluster
        apiVersion: kind.x-k8s.io/v1alpha4
        nodes:
        - role: control-plane
          labels: &common
            team: infra
        - role: worker
          labels:
            <<: *common
            tier: backend
        ",
    );
    assert_eq!(c.cluster.nodes[1].labels["team"], "infra");
    assert_eq!(c.cluster.nodes[1].labels["tier"], "backend");
}

// --- kina's document -------------------------------------------------------

const TWO_NODES: &str = "kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
- role: control-plane
- role: worker
";

#[test]
fn kinas_settings_live_in_a_second_document_of_the_same_file() {
    let text = format!(
        "{TWO_NODES}---\n{}",
        yaml(
            "
            kind: Kina
            apiVersion: kina.dev/v1alpha1
            cpus: 3
            memory: 4Gi
            kernel: kernels/debian-cloud.toml
            kernelProfiles: [kubernetes-base, ptp, cilium]
            nodes:
            - {}
            - cpus: 8
              memory: 16384
            "
        )
    );
    let c = ClusterConfig::parse(&text).unwrap();
    assert_eq!(c.cluster.nodes.len(), 2);
    assert_eq!(c.kina.cpus, 3);
    assert_eq!(c.kina.memory, MemoryMib(4096));
    assert_eq!(
        c.kina.kernel.as_deref(),
        Some(Path::new("kernels/debian-cloud.toml"))
    );
    assert_eq!(
        c.kina.kernel_profiles.as_deref(),
        Some(&["kubernetes-base".to_string(), "ptp".into(), "cilium".into()][..])
    );
    assert_eq!(
        c.node_resources(0),
        NodeResources {
            cpus: 3,
            memory_mib: 4096
        }
    );
    assert_eq!(
        c.node_resources(1),
        NodeResources {
            cpus: 8,
            memory_mib: 16384
        }
    );

    // What kind does with the same file: it decodes the first document
    // only (yaml.v3 Unmarshal / Decoder.Decode), which is the Cluster. The
    // first document here is exactly the Cluster config on its own.
    let first = serde_norway::Deserializer::from_str(&text).next().unwrap();
    let first = Yaml::deserialize(first).unwrap();
    assert_eq!(first.get("kind").and_then(Yaml::as_str), Some("Cluster"));
    assert_eq!(ClusterConfig::parse(TWO_NODES).unwrap().cluster, c.cluster);
}

#[test]
fn memory_is_mib_or_a_quantity() {
    for (text, mib) in [
        ("2048", 2048),
        ("512Mi", 512),
        ("4Gi", 4096),
        ("\"1024\"", 1024),
    ] {
        let c = parse(&format!(
            "{HEAD}---\nkind: Kina\napiVersion: kina.dev/v1alpha1\nmemory: {text}\n"
        ));
        assert_eq!(c.kina.memory, MemoryMib(mib), "{text}");
    }
    for bad in ["4GB", "-1", "1.5Gi", "Gi", "5000000Gi"] {
        let all = errors(&format!(
            "{HEAD}---\nkind: Kina\napiVersion: kina.dev/v1alpha1\nmemory: {bad}\n"
        ));
        assert_eq!(all.len(), 1, "{bad}: {all:?}");
        assert_eq!(
            (all[0].document, all[0].path.as_str()),
            (Document::Kina, "memory")
        );
        assert!(
            all[0].to_string().starts_with("Kina document: memory: "),
            "{}",
            all[0]
        );
    }
}

#[test]
fn the_kina_document_is_checked_like_the_clusters() {
    let kina = |body: &str| {
        format!(
            "{TWO_NODES}---\nkind: Kina\napiVersion: kina.dev/v1alpha1\n{}",
            yaml(body)
        )
    };
    let e = error_at(&kina("cpu: 4\n"), "cpu", &["did you mean cpus?"]);
    assert_eq!(e.document, Document::Kina);
    error_at(
        &kina("nodes:\n- memry: 4Gi\n"),
        "nodes[0].memry",
        &["did you mean memory?"],
    );
    error_at(
        &kina("networking: {}\n"),
        "networking",
        &["kind's schema", "Cluster document"],
    );
    error_at(&kina("cpus: 0\n"), "cpus", &["at least 1 CPU"]);
    error_at(
        &kina("nodes:\n- cpus: 0\n"),
        "nodes[0].cpus",
        &["at least 1 CPU"],
    );
    error_at(
        &kina("kernelProfiles: [ptp, '']\n"),
        "kernelProfiles[1]",
        &["empty"],
    );
    error_at(
        &kina("nodes: [{}, {}, {cpus: 2}]\n"),
        "nodes",
        &["3 entries", "2 node(s)"],
    );
    error_at(&kina("cpus: many\n"), "cpus", &["invalid type"]);
}

#[test]
fn kinas_settings_in_kinds_document_point_to_the_kina_document() {
    error_at(
        &cluster("cpus: 4\n"),
        "cpus",
        &["kina's own settings", "kind: Kina", "same file"],
    );
    error_at(
        &cluster("nodes:\n- role: worker\n  memory: 4Gi\n- role: control-plane\n"),
        "nodes[0].memory",
        &["kina's own settings", "kind: Kina"],
    );
}

#[test]
fn documents_are_checked() {
    let kina_doc = "kind: Kina\napiVersion: kina.dev/v1alpha1\n";
    let all = errors(&format!("{kina_doc}---\n{HEAD}"));
    assert!(
        all[0].message.contains("before the Cluster document"),
        "{all:?}"
    );
    assert!(
        errors(&format!("{HEAD}---\n{HEAD}"))[0]
            .message
            .contains("both `kind: Cluster`")
    );
    assert!(
        errors(&format!("{HEAD}---\n{kina_doc}---\n{kina_doc}"))[0]
            .message
            .contains("both `kind: Kina`")
    );
    assert!(
        errors(kina_doc)[0]
            .message
            .contains("no `apiVersion: kind.x-k8s.io/v1alpha4`")
    );
    assert!(errors("")[0].message.contains("no `apiVersion"));
    assert!(errors("# nothing\n")[0].message.contains("no `apiVersion"));
    error_at(
        "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha3\n",
        "apiVersion",
        &["kind.x-k8s.io/v1alpha4"],
    );
    error_at(
        "kind: Config\napiVersion: kind.x-k8s.io/v1alpha4\n",
        "kind",
        &["unknown kind `Config`"],
    );
    assert!(
        errors("kind: Cluster\n")[0]
            .message
            .contains("no apiVersion")
    );
    assert!(
        errors("apiVersion: v1\nkind: Pod\n")[0]
            .message
            .contains("`apiVersion: v1`, `kind: Pod`")
    );
    assert!(errors("- a list\n")[0].message.contains("not a mapping"));
    let e = &errors("kind: Cluster\napiVersion: [\n")[0];
    assert!(e.message.starts_with("not YAML: "), "{e}");
    assert!(e.message.contains("line"), "{e}");
    // Duplicate keys are refused, as kind's YAML library does.
    let e = &errors(&cluster("nodes:\n- labels: {a: 1, a: 2}\n"))[0];
    assert!(e.message.contains("duplicate entry with key \"a\""), "{e}");
    // Empty documents around the Cluster document are fine.
    parse(&format!("---\n{HEAD}---\n"));
}

// --- unknown fields --------------------------------------------------------

#[test]
fn an_unknown_field_is_named_with_its_path_and_the_field_meant() {
    let text = cluster(
        "
        nodes:
        - role: control-plane
        - role: worker
          extraPortMapping:
          - containerPort: 80
            hostPort: 80
        ",
    );
    let e = error_at(&text, "nodes[1].extraPortMapping", &[]);
    assert_eq!(e.message, "unknown field, did you mean extraPortMappings?");
    assert_eq!(
        e.to_string(),
        "nodes[1].extraPortMapping: unknown field, did you mean extraPortMappings?"
    );
    // Case alone, at every level.
    error_at(
        &cluster(
            "nodes:\n- extraMounts:\n  - hostPath: /a\n    containerPath: /b\n    readonly: true\n",
        ),
        "nodes[0].extraMounts[0].readonly",
        &["did you mean readOnly?"],
    );
    error_at(
        &cluster("kubeadmConfigPatchesJson6902: []\n"),
        "kubeadmConfigPatchesJson6902",
        &["did you mean kubeadmConfigPatchesJSON6902?"],
    );
    error_at(
        &cluster("networking:\n  disableDefaultCni: true\n"),
        "networking.disableDefaultCNI"
            .replace("CNI", "Cni")
            .as_str(),
        &["did you mean disableDefaultCNI?"],
    );
    error_at(
        &cluster("kubeadmConfigPatchesJSON6902:\n- kind: X\n  patch: '[]'\n  namespace: x\n"),
        "kubeadmConfigPatchesJSON6902[0].namespace",
        &["a JSON 6902 patch has group, version, kind, patch"],
    );
}

#[test]
fn kinds_invalid_test_data_is_refused_naming_the_field() {
    // invalid-bogus-field.yaml (its ipv6 family is left out here: that is
    // a separate refusal).
    let bogus = cluster(
        "
        nodes:
        - role: control-plane
        - role: worker
          extraMounts:
          - containerPath: /foo
            hostPath: /bar
            readOnly: true
            selinuxRelabel: false
            propagation: Bidirectional
          extraPortMappings:
          - containerPort: 8080
            hostPort: 8080
            protocol: UDP
            nOtAReaLFielD: bar
        ",
    );
    error_at(
        &bogus,
        "nodes[1].extraPortMappings[0].nOtAReaLFielD",
        &["unknown field: a port mapping has containerPort, hostPort, listenAddress, protocol"],
    );
    // invalid-bad-indent.yaml: a node indented into the port mappings.
    let bad_indent = cluster(
        "
        nodes:
        - role: control-plane
        - role: worker
          extraPortMappings:
          - containerPort: 8080
            hostPort: 8080
            protocol: UDP
          - role: worker
        ",
    );
    error_at(
        &bad_indent,
        "nodes[1].extraPortMappings[1].role",
        &["a node's field", "indentation"],
    );
}

#[test]
fn a_field_at_the_wrong_level_says_where_it_belongs() {
    error_at(
        &cluster("podSubnet: 10.0.0.0/16\n"),
        "podSubnet",
        &["under `networking:`"],
    );
    error_at(&cluster("role: worker\n"), "role", &["entry of `nodes:`"]);
    error_at(
        &cluster("nodes:\n- hostPort: 80\n"),
        "nodes[0].hostPort",
        &["`extraPortMappings:`"],
    );
    error_at(
        &cluster("nodes:\n- containerPath: /x\n"),
        "nodes[0].containerPath",
        &["`extraMounts:`"],
    );
}

#[test]
fn every_unknown_field_is_reported_at_once() {
    let all = errors(&cluster(
        "
        nam: x
        networking:
          podSubnets: 10.0.0.0/16
        nodes:
        - rol: worker
        - role: control-plane
          imag: x
        ",
    ));
    let paths: Vec<&str> = all.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "nam",
            "networking.podSubnets",
            "nodes[0].rol",
            "nodes[1].imag"
        ]
    );
}

#[test]
fn a_value_of_the_wrong_type_is_named_with_its_path() {
    let e = error_at(
        &cluster("nodes:\n- extraPortMappings:\n  - containerPort: 80\n    hostPort: eighty\n"),
        "nodes[0].extraPortMappings[0].hostPort",
        &["invalid type", "i32"],
    );
    assert_eq!(e.document, Document::Cluster);
    error_at(
        &cluster("nodes:\n- role: master\n"),
        "nodes[0].role",
        &["unknown variant `master`", "control-plane", "worker"],
    );
    // kind compares the protocol exactly: TCP, UDP or SCTP.
    error_at(
        &cluster("nodes:\n- extraPortMappings:\n  - containerPort: 80\n    protocol: tcp\n"),
        "nodes[0].extraPortMappings[0].protocol",
        &["unknown variant `tcp`", "TCP"],
    );
    error_at(
        &cluster(
            "nodes:\n- extraMounts:\n  - {hostPath: /a, containerPath: /b, propagation: Private}\n",
        ),
        "nodes[0].extraMounts[0].propagation",
        &["unknown variant `Private`", "HostToContainer"],
    );
    error_at(
        &cluster("featureGates:\n  Foo: maybe\n"),
        "featureGates.Foo",
        &["invalid type"],
    );
    error_at(&cluster("nodes: {}\n"), "nodes", &["invalid type"]);
}

// --- checks ----------------------------------------------------------------

#[test]
fn a_cluster_needs_exactly_one_control_plane_node() {
    error_at(
        &cluster("nodes:\n- role: worker\n- role: worker\n"),
        "nodes",
        &["no control-plane node"],
    );
    // kind's valid-full-ha.yaml: three control-plane nodes.
    let all = errors(&cluster(
        "
        nodes:
        - role: control-plane
        - role: control-plane
        - role: control-plane
        - role: worker
        - role: worker
        - role: worker
        ",
    ));
    let paths: Vec<&str> = all.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["nodes[1].role", "nodes[2].role"]);
    assert!(
        all[0]
            .message
            .contains("kina supports one control-plane node")
    );
    assert!(all[0].message.contains("nodes[0] is one"));
    // The role defaults to control-plane, as in kind.
    error_at(
        &cluster("nodes:\n- image: a\n- image: b\n"),
        "nodes[1].role",
        &["second control-plane"],
    );
}

#[test]
fn host_ports_are_taken_once_across_nodes() {
    let two = |a: &str, b: &str| {
        cluster(&format!(
            "nodes:\n- role: control-plane\n  extraPortMappings:\n  - {a}\n- role: worker\n  extraPortMappings:\n  - {b}\n"
        ))
    };
    error_at(
        &two(
            "{containerPort: 80, hostPort: 8080, listenAddress: 127.0.0.1}",
            "{containerPort: 81, hostPort: 8080, listenAddress: 127.0.0.1}",
        ),
        "nodes[1].extraPortMappings[0].hostPort",
        &[
            "8080/TCP on 127.0.0.1",
            "taken by nodes[0].extraPortMappings[0]",
        ],
    );
    // The default 0.0.0.0 takes the port on every address.
    error_at(
        &two(
            "{containerPort: 80, hostPort: 80}",
            "{containerPort: 80, hostPort: 80, listenAddress: 127.0.0.1}",
        ),
        "nodes[1].extraPortMappings[0].hostPort",
        &["80/TCP"],
    );
    error_at(
        &two(
            "{containerPort: 80, hostPort: 80, listenAddress: 127.0.0.1}",
            "{containerPort: 80, hostPort: 80, listenAddress: '::'}",
        ),
        "nodes[1].extraPortMappings[0].hostPort",
        &["80/TCP"],
    );
    // Another protocol or address, or ports kina picks, do not clash.
    parse(&two(
        "{containerPort: 53, hostPort: 53, protocol: UDP}",
        "{containerPort: 53, hostPort: 53}",
    ));
    parse(&two(
        "{containerPort: 80, hostPort: 80, listenAddress: 127.0.0.1}",
        "{containerPort: 80, hostPort: 80, listenAddress: 127.0.0.2}",
    ));
    parse(&two(
        "{containerPort: 80}",
        "{containerPort: 80, hostPort: 0}",
    ));
    parse(&two(
        "{containerPort: 80, hostPort: -1}",
        "{containerPort: 80, hostPort: -1}",
    ));
    // Within one node too, and against the API server's port.
    error_at(
        &cluster(
            "nodes:\n- extraPortMappings:\n  - {containerPort: 1, hostPort: 9000}\n  - {containerPort: 2, hostPort: 9000}\n",
        ),
        "nodes[0].extraPortMappings[1].hostPort",
        &["taken by nodes[0].extraPortMappings[0]"],
    );
    error_at(
        &cluster(
            "networking:\n  apiServerPort: 6443\nnodes:\n- extraPortMappings:\n  - {containerPort: 6443, hostPort: 6443}\n",
        ),
        "nodes[0].extraPortMappings[0].hostPort",
        &["taken by networking.apiServerPort"],
    );
}

#[test]
fn ports_and_addresses_are_checked() {
    error_at(
        &cluster("nodes:\n- extraPortMappings:\n  - {containerPort: 80, hostPort: 70000}\n"),
        "nodes[0].extraPortMappings[0].hostPort",
        &["70000 is not a port"],
    );
    error_at(
        &cluster("nodes:\n- extraPortMappings:\n  - {hostPort: 80}\n"),
        "nodes[0].extraPortMappings[0].containerPort",
        &["missing"],
    );
    error_at(
        &cluster(
            "nodes:\n- extraPortMappings:\n  - {containerPort: 80, listenAddress: localhost}\n",
        ),
        "nodes[0].extraPortMappings[0].listenAddress",
        &["not an IP address"],
    );
    error_at(
        &cluster("networking:\n  apiServerPort: -2\n"),
        "networking.apiServerPort",
        &["not a port"],
    );
    error_at(
        &cluster("networking:\n  apiServerAddress: localhost\n"),
        "networking.apiServerAddress",
        &["not an IP address"],
    );
    error_at(
        &cluster("nodes:\n- extraMounts:\n  - {hostPath: /a, containerPath: rel}\n"),
        "nodes[0].extraMounts[0].containerPath",
        &["not an absolute path"],
    );
    error_at(
        &cluster("nodes:\n- extraMounts:\n  - {containerPath: /a}\n"),
        "nodes[0].extraMounts[0].hostPath",
        &["missing"],
    );
    error_at(&cluster("name: My_Cluster\n"), "name", &["lowercase"]);
}

#[test]
fn subnets_must_be_ipv4_cidrs_that_do_not_overlap() {
    let net = |body: &str| cluster(&format!("networking:\n{body}"));
    error_at(
        &net("  podSubnet: 10.244.0.0\n"),
        "networking.podSubnet",
        &["not a CIDR"],
    );
    error_at(
        &net("  podSubnet: 10.244.0.0/33\n"),
        "networking.podSubnet",
        &["prefix"],
    );
    error_at(
        &net("  serviceSubnet: ten/16\n"),
        "networking.serviceSubnet",
        &["not an IPv4 address"],
    );
    error_at(
        &net("  podSubnet: fd00:10:244::/56\n"),
        "networking.podSubnet",
        &["IPv6", "IPv4 only"],
    );
    error_at(
        &net("  podSubnet: 10.244.0.0/16,fd00:10:244::/56\n"),
        "networking.podSubnet",
        &["dual-stack"],
    );
    error_at(
        &net("  podSubnet: 10.0.0.0/8\n  serviceSubnet: 10.96.0.0/16\n"),
        "networking.serviceSubnet",
        &["overlaps the pod subnet 10.0.0.0/8"],
    );
    error_at(
        &net("  podSubnet: 10.96.128.0/17\n"),
        "networking.serviceSubnet",
        &["overlaps"],
    );
    // Host bits may be set, as Go's ParseCIDR allows.
    let c = parse(&net("  podSubnet: 10.244.1.0/16\n"));
    assert_eq!(c.cluster.networking.pod_subnet, "10.244.1.0/16");
    // Every node gets a /24 of the pod subnet.
    error_at(
        &net("  podSubnet: 10.244.0.0/25\n"),
        "networking.podSubnet",
        &["too small"],
    );
    let three = cluster(
        "networking:\n  podSubnet: 10.244.0.0/23\nnodes:\n- role: control-plane\n- role: worker\n- role: worker\n",
    );
    error_at(&three, "networking.podSubnet", &["3 node(s)"]);
    error_at(
        &net("  serviceSubnet: 10.0.0.0/8\n  podSubnet: 192.168.0.0/16\n"),
        "networking.serviceSubnet",
        &["too large"],
    );
}

#[test]
fn ipv6_and_dual_stack_are_refused_with_the_reason() {
    for family in ["ipv6", "dual"] {
        // kind's own ipv6 and dual-stack examples.
        let e = error_at(
            &cluster(&format!("networking:\n  ipFamily: {family}\n")),
            "networking.ipFamily",
            &[family, "kina supports ipv4 only"],
        );
        assert!(e.message.contains("ptp CNI"), "{e}");
    }
    error_at(
        &cluster("networking:\n  ipFamily: ipv5\n"),
        "networking.ipFamily",
        &["unknown variant `ipv5`"],
    );
}

#[test]
fn a_kube_proxy_mode_outside_kubes_is_refused() {
    error_at(
        &cluster("networking:\n  kubeProxyMode: userspace\n"),
        "networking.kubeProxyMode",
        &[
            "unknown variant `userspace`",
            "iptables",
            "nftables",
            "ipvs",
            "none",
        ],
    );
}

#[test]
fn patches_that_are_not_yaml_are_refused_naming_the_patch() {
    error_at(
        &cluster("kubeadmConfigPatches:\n- |\n  kind: ClusterConfiguration\n  apiServer: [\n"),
        "kubeadmConfigPatches[0]",
        &["not YAML", "line"],
    );
    error_at(
        &cluster(
            "nodes:\n- kubeadmConfigPatches:\n  - 'kind: InitConfiguration'\n  - \"kind: X\\n\\tbad: tab\"\n",
        ),
        "nodes[0].kubeadmConfigPatches[1]",
        &["not YAML"],
    );
    // A patch written as YAML instead of as text holding YAML.
    error_at(
        &cluster("nodes:\n- kubeadmConfigPatches:\n  - kind: InitConfiguration\n"),
        "nodes[0].kubeadmConfigPatches[0]",
        &["YAML text", "`- |`"],
    );
    error_at(
        &cluster(
            "kubeadmConfigPatchesJSON6902:\n- kind: InitConfiguration\n  patch:\n  - op: remove\n    path: /x\n",
        ),
        "kubeadmConfigPatchesJSON6902[0].patch",
        &["YAML text", "`patch: |`"],
    );
    error_at(
        &cluster("kubeadmConfigPatches:\n- just a string\n"),
        "kubeadmConfigPatches[0]",
        &["not a mapping"],
    );
    error_at(
        &cluster("kubeadmConfigPatches:\n- |\n  kind: InitConfiguration\n  ---\n  apiServer: {}\n"),
        "kubeadmConfigPatches[0]",
        &["document 2 has no `kind`"],
    );
    error_at(
        &cluster(
            "kubeadmConfigPatchesJSON6902:\n- kind: ClusterConfiguration\n  patch: '- op: add\n    path: [\n'\n",
        ),
        "kubeadmConfigPatchesJSON6902[0].patch",
        &["not YAML"],
    );
    error_at(
        &cluster(
            "kubeadmConfigPatchesJSON6902:\n- kind: ClusterConfiguration\n  patch: |\n    - op: ad\n      path: /x\n",
        ),
        "kubeadmConfigPatchesJSON6902[0].patch",
        &["not a JSON 6902 patch"],
    );
    error_at(
        &cluster("kubeadmConfigPatchesJSON6902:\n- kind: ClusterConfiguration\n"),
        "kubeadmConfigPatchesJSON6902[0].patch",
        &["empty"],
    );
    error_at(
        &cluster("nodes:\n- kubeadmConfigPatchesJSON6902:\n  - patch: '[]'\n"),
        "nodes[0].kubeadmConfigPatchesJSON6902[0].kind",
        &["missing"],
    );
    error_at(
        &cluster(
            "kubeadmConfigPatchesJSON6902:\n- {group: kubeadm.k8s.io, kind: InitConfiguration, patch: '[]'}\n",
        ),
        "kubeadmConfigPatchesJSON6902[0].version",
        &["match no document"],
    );
    error_at(
        &cluster("containerdConfigPatches:\n- |\n  [plugins\n"),
        "containerdConfigPatches[0]",
        &["not TOML"],
    );
    error_at(
        &cluster("containerdConfigPatchesJSON6902:\n- '{op: add}'\n"),
        "containerdConfigPatchesJSON6902[0]",
        &["not a JSON 6902 patch"],
    );
}

#[test]
fn all_problems_are_reported_together() {
    let all = errors(&cluster(
        "
        networking:
          ipFamily: dual
          podSubnet: nonsense
        nodes:
        - role: worker
        ",
    ));
    let paths: Vec<&str> = all.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["networking.ipFamily", "networking.podSubnet", "nodes"]
    );
}

#[test]
fn load_names_the_file_and_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kind.yaml");
    std::fs::write(
        &path,
        cluster("nodes:\n- role: worker\n  extraPortMapping: []\n"),
    )
    .unwrap();
    let err = ClusterConfig::load(&path).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("cluster config {} is not valid:", path.display())),
        "{text}"
    );
    assert!(
        text.contains(
            "\n  nodes[0].extraPortMapping: unknown field, did you mean extraPortMappings?"
        ),
        "{text}"
    );

    std::fs::write(&path, TWO_NODES).unwrap();
    assert_eq!(ClusterConfig::load(&path).unwrap().cluster.nodes.len(), 2);
    let missing = ClusterConfig::load(&dir.path().join("nope.yaml")).unwrap_err();
    assert!(matches!(missing, ConfigError::Read { .. }), "{missing}");
}

// --- per-provider refusals -------------------------------------------------

#[test]
fn what_a_provider_cannot_honour_is_named() {
    let c = parse(&cluster(
        "
        networking:
          disableDefaultCNI: true
          dnsSearch: [corp.example]
        containerdConfigPatches:
        - 'version = 2'
        nodes:
        - role: control-plane
          image: kindest/node:v1.30.0
          extraMounts:
          - {hostPath: /a, containerPath: /a, selinuxRelabel: true, propagation: Bidirectional}
          - {hostPath: /b, containerPath: /b, readOnly: true}
          extraPortMappings:
          - {containerPort: 9899, hostPort: 9899, protocol: SCTP}
          - {containerPort: 53, hostPort: 53, protocol: UDP}
        ",
    ));
    let apple = c.apple_refusals();
    let paths: Vec<&str> = apple.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "nodes[0].image",
            "nodes[0].extraMounts[0].propagation",
            "nodes[0].extraMounts[0].selinuxRelabel",
            "nodes[0].extraPortMappings[0].protocol",
        ]
    );
    let why = |path: &str| {
        apple
            .iter()
            .find(|e| e.path == path)
            .map(|e| e.message.clone())
            .unwrap_or_default()
    };
    assert!(why("nodes[0].extraMounts[0].propagation").contains("share a kernel"));
    assert!(why("nodes[0].extraPortMappings[0].protocol").contains("TCP and UDP"));
    assert!(why("nodes[0].image").contains("kina node image"));

    let qemu = c.qemu_refusals();
    let paths: Vec<&str> = qemu.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "nodes[0].image",
            "nodes[0].extraMounts[0]",
            "nodes[0].extraMounts[1]",
            "nodes[0].extraPortMappings[0].protocol",
        ]
    );
    assert!(qemu[1].message.contains("cannot share host directories"));
    assert!(qemu[3].message.contains("QEMU's user-mode network"));
}

/// kind's own CNI, DNS and containerd fields, as its users write them
/// (kind's local-registry guide, site/static/examples/kind-with-registry.sh;
/// a Cilium-ready cluster without kindnet and kube-proxy), are accepted on
/// both providers and carried to the node spec.
#[test]
fn kinds_cni_dns_and_containerd_fields_are_accepted_on_both_providers() {
    let c = parse(&format!(
        "{TWO_NODES}\
         networking:\n  disableDefaultCNI: true\n  kubeProxyMode: none\n  dnsSearch: [corp.example]\n\
         containerdConfigPatches:\n\
         - |-\n  [plugins.\"io.containerd.grpc.v1.cri\".registry]\n    config_path = \"/etc/containerd/certs.d\"\n\
         containerdConfigPatchesJSON6902:\n\
         - |\n  - op: add\n    path: /plugins/io.containerd.grpc.v1.cri/max_concurrent_downloads\n    value: 5\n\
         ---\nkind: Kina\napiVersion: kina.dev/v1alpha1\nkernelProfiles: [kubernetes-base, cilium-kpr]\n"
    ));
    assert!(c.apple_refusals().is_empty(), "{:?}", c.apple_refusals());
    assert!(c.qemu_refusals().is_empty(), "{:?}", c.qemu_refusals());
    assert!(c.cluster.networking.disable_default_cni);
    assert_eq!(
        c.cluster.networking.dns_search,
        Some(vec!["corp.example".to_string()])
    );
    assert_eq!(c.cluster.containerd_config_patches.len(), 1);
    assert_eq!(
        c.containerd_patches_json6902(),
        [
            json!([{"op": "add", "path": "/plugins/io.containerd.grpc.v1.cri/max_concurrent_downloads", "value": 5}])
        ]
    );
}

#[test]
fn a_search_domain_or_containerd_patch_that_cannot_work_is_refused_by_name() {
    error_at(
        &cluster("networking:\n  dnsSearch: [corp.example, 'two words']\n"),
        "networking.dnsSearch[1]",
        &["not a search domain"],
    );
    error_at(
        &cluster("networking:\n  dnsSearch: ['']\n"),
        "networking.dnsSearch[0]",
        &["not a search domain"],
    );
    // Applies to no kina containerd configuration: nothing to remove.
    error_at(
        &cluster(
            "containerdConfigPatchesJSON6902:\n- '[{\"op\": \"remove\", \"path\": \"/plugins/io.containerd.grpc.v1.cri/registry\"}]'\n",
        ),
        "containerdConfigPatchesJSON6902[0]",
        &["cannot apply", "containerd 1.7 and 2.x", "--dry-run"],
    );
    error_at(
        &cluster("containerdConfigPatches:\n- 'version = \"two\"'\n"),
        "containerdConfigPatches[0]",
        &["not an integer"],
    );
}

#[test]
fn both_providers_run_several_nodes_and_apple_boots_one_kernel_image() {
    // Subnets colliding with QEMU's own networks: provider::qemu's tests.
    let c = parse(TWO_NODES);
    assert!(c.apple_refusals().is_empty());
    assert!(c.qemu_refusals().is_empty());

    // `kernel` is for both (what it names is judged when it is opened:
    // crate::node_kernel); with `kernelImage` too, Apple has two kernels.
    let c = parse(&format!(
        "{TWO_NODES}---\nkind: Kina\napiVersion: kina.dev/v1alpha1\nkernel: kernels/debian-cloud.toml\n"
    ));
    assert!(c.qemu_refusals().is_empty());
    assert!(c.apple_refusals().is_empty());
    let c = parse(&format!(
        "{TWO_NODES}---\nkind: Kina\napiVersion: kina.dev/v1alpha1\nkernel: kernels/cilium-kpr\nkernelImage: vmlinux\n"
    ));
    let apple = c.apple_refusals();
    assert_eq!(apple.len(), 1, "{apple:?}");
    assert_eq!(apple[0].path, "kernel");
    assert_eq!(apple[0].document, Document::Kina);
    assert!(apple[0].to_string().contains("kernelImage"), "{}", apple[0]);

    // A kernel image is Apple's (`container run --kernel`); QEMU says to
    // name a recipe.
    let c = parse(&format!(
        "{TWO_NODES}---\nkind: Kina\napiVersion: kina.dev/v1alpha1\nkernelImage: kernels/vmlinux-arm64\n"
    ));
    assert_eq!(
        c.kina.kernel_image.as_deref(),
        Some(Path::new("kernels/vmlinux-arm64"))
    );
    assert!(c.apple_refusals().is_empty());
    let qemu = c.qemu_refusals();
    assert_eq!(qemu.len(), 1, "{qemu:?}");
    assert_eq!(qemu[0].path, "kernelImage");
    assert!(qemu[0].to_string().contains("`kernel`"), "{}", qemu[0]);
}

#[test]
fn kind_images_are_recognised() {
    for image in [
        "kindest/node:v1.30.0",
        "docker.io/kindest/node:v1.30.0@sha256:abc",
        "kindest/node@sha256:abc",
        "kindest/node",
    ] {
        assert!(is_kindest_image(image), "{image}");
    }
    for image in [
        "kina.local/node:dev",
        "example.com/kindest/node:v1",
        "kindest/nodes:x",
    ] {
        assert!(!is_kindest_image(image), "{image}");
    }
}

// --- helpers ---------------------------------------------------------------

#[test]
fn field_names_come_from_serdes_derive() {
    assert_eq!(
        fields_of::<PortMapping>(),
        ["containerPort", "hostPort", "listenAddress", "protocol"]
    );
    assert_eq!(
        fields_of::<Mount>(),
        [
            "hostPath",
            "containerPath",
            "readOnly",
            "selinuxRelabel",
            "propagation"
        ]
    );
    assert_eq!(
        fields_of::<Networking>(),
        [
            "ipFamily",
            "apiServerAddress",
            "apiServerPort",
            "podSubnet",
            "serviceSubnet",
            "disableDefaultCNI",
            "kubeProxyMode",
            "dnsSearch"
        ]
    );
    assert_eq!(
        fields_of::<Node>(),
        [
            "role",
            "image",
            "labels",
            "extraMounts",
            "extraPortMappings",
            "kubeadmConfigPatches",
            "kubeadmConfigPatchesJSON6902"
        ]
    );
    assert_eq!(
        fields_of::<Cluster>(),
        [
            "kind",
            "apiVersion",
            "name",
            "nodes",
            "networking",
            "featureGates",
            "runtimeConfig",
            "kubeadmConfigPatches",
            "kubeadmConfigPatchesJSON6902",
            "containerdConfigPatches",
            "containerdConfigPatchesJSON6902"
        ]
    );
    assert_eq!(
        fields_of::<PatchJson6902>(),
        ["group", "version", "kind", "patch"]
    );
    assert!(fields_of::<String>().is_empty());
}

#[test]
fn cidrs_overlap_when_either_holds_the_other() {
    let c = |s: &str| Ipv4Cidr::parse(s).unwrap();
    assert!(c("10.0.0.0/8").overlaps(&c("10.96.0.0/16")));
    assert!(c("10.96.0.0/16").overlaps(&c("10.0.0.0/8")));
    assert!(!c("10.244.0.0/16").overlaps(&c("10.96.0.0/16")));
    assert!(c("0.0.0.0/0").overlaps(&c("192.168.1.0/24")));
    assert_eq!(c("10.244.1.7/16").to_string(), "10.244.0.0/16");
    assert_eq!(c("10.0.2.15/32").to_string(), "10.0.2.15/32");
}

#[test]
fn suggestions_are_close_and_never_wild() {
    let fields = fields_of::<Node>();
    assert_eq!(
        nearest("extraPortMapping", fields),
        Some("extraPortMappings")
    );
    assert_eq!(nearest("imgae", fields), Some("image"));
    assert_eq!(nearest("LABELS", fields), Some("labels"));
    assert_eq!(nearest("rol", fields), Some("role"));
    assert_eq!(nearest("name", fields), None);
    assert_eq!(nearest("cpus", fields), None);
    assert_eq!(edit_distance("kitten", "sitting"), 3);
}

/// The cluster's patches followed by node `i`'s, in the order kina-init
/// applies them.
fn combined_patches(c: &ClusterConfig, i: usize) -> (Vec<Value>, Vec<Json6902Patch>) {
    let (mut merge, mut json6902) = c.cluster_kubeadm_patches();
    let (node_merge, node_json6902) = c.node_kubeadm_patches(i);
    merge.extend(node_merge);
    json6902.extend(node_json6902);
    (merge, json6902)
}

mod generated {
    use super::*;
    use proptest::prelude::*;

    /// YAML made of the pieces a kind config is made of, in any order.
    fn yamlish() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                Just("kind: Cluster\n".to_string()),
                Just("apiVersion: kind.x-k8s.io/v1alpha4\n".to_string()),
                Just("---\n".to_string()),
                Just("kind: Kina\n".to_string()),
                Just("nodes:\n".to_string()),
                Just("- role: control-plane\n".to_string()),
                Just("- role: worker\n".to_string()),
                Just("  extraPortMappings:\n  - containerPort: 80\n".to_string()),
                Just("networking:\n  podSubnet: 10.244.0.0/16\n".to_string()),
                Just("  kubeProxyMode: none\n".to_string()),
                "[a-zA-Z]{1,8}: [a-z0-9./]{0,10}\n",
                "  [a-zA-Z]{1,8}: [\\[\\]{}0-9a-z\"']{0,8}\n",
                "[ -~]{0,20}\n",
            ],
            0..12,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 512,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// A config file is the user's text: whatever it holds, kina either
        /// reads it or names what is wrong; it never panics.
        #[test]
        fn any_text_is_read_or_refused_with_reasons(text in yamlish()) {
            match ClusterConfig::parse(&text) {
                Ok(config) => prop_assert!(!config.cluster.nodes.is_empty()),
                Err(errors) => {
                    prop_assert!(!errors.is_empty());
                    for e in &errors {
                        prop_assert!(!e.to_string().trim().is_empty());
                    }
                }
            }
        }
    }
}
