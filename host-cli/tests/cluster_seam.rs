//! The provider seam is real: a provider made here, in memory, drives
//! `up`, `start`, `stop` and `down` through kina's own cluster code (the
//! same functions the `kina` binary calls), and what the cluster code asks
//! of it, in what order, and what it takes back after a failure or Ctrl-C
//! is checked call by call.
//!
//! `RecordingProvider` is a test double: no provider a user runs is made
//! of memory. It records every call, keeps its nodes in a map, answers
//! exec of kina-init's status file with a status whose phases are all
//! done (or one failed, when told), and fails whichever call it is told
//! to.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use kina::cluster::kubeconfig::KubeconfigFiles;
use kina::cluster::lifecycle;
use kina::cluster::plan::{Addressing, ClusterPlan, NodeInterfaces};
use kina::cluster::progress::Steps;
use kina::cluster::up::{UpRequest, up};
use kina::cluster::{ClusterDir, record};
use kina::cluster_config::{ClusterConfig, FieldError};
use kina::dirs::KinaDirs;
use kina::provider::{Provider, ProviderKind, SpecMaker};
use kina_contract::status::{NodeStatus, PhaseState, STATUS_PATH};

const TWO_NODES: &str = "kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
- role: control-plane
- role: worker
";

#[derive(Default)]
struct RecordingProvider {
    calls: Mutex<Vec<String>>,
    /// Nodes made, by name: whether each runs.
    nodes: Mutex<BTreeMap<String, bool>>,
    /// The call that fails (`prepare`, `create`, …).
    fail_at: Option<&'static str>,
    /// A node whose status reports a failed phase.
    failing_node: Option<&'static str>,
    /// Fired once `create` has made its nodes, then `create` never
    /// returns: Ctrl-C in the middle of a step.
    interrupt_in_create: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    /// Where cluster records live, to see what exists when `delete` runs.
    records: Option<KinaDirs>,
    record_at_delete: Mutex<Option<bool>>,
}

impl RecordingProvider {
    fn call(&self, what: &str) -> anyhow::Result<()> {
        self.calls.lock().unwrap().push(what.to_string());
        if self.fail_at == Some(what) {
            anyhow::bail!("{what} failed (told to)");
        }
        Ok(())
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    /// The calls besides reads of status (how many the wait makes depends
    /// on timing).
    fn steps(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| !c.starts_with("exec ") && !c.starts_with("alive "))
            .collect()
    }
}

impl Provider for RecordingProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Qemu
    }

    fn refusals(&self, _config: &ClusterConfig) -> Vec<FieldError> {
        self.calls.lock().unwrap().push("refusals".into());
        Vec::new()
    }

    fn shape(&self, plan: &mut ClusterPlan, _others: &[ClusterPlan]) -> anyhow::Result<()> {
        self.call("shape")?;
        for (i, node) in plan.nodes.iter_mut().enumerate() {
            node.address = Some(Ipv4Addr::new(10, 0, 0, 2 + i as u8));
        }
        plan.addressing = Addressing::Fixed;
        Ok(())
    }

    fn node_interfaces(
        &self,
        _plan: &ClusterPlan,
        _index: usize,
    ) -> anyhow::Result<NodeInterfaces> {
        Ok(NodeInterfaces::default())
    }

    fn check_free(&self, _plan: &ClusterPlan) -> anyhow::Result<()> {
        self.call("check_free")
    }

    fn prepare_title(&self, _plan: &ClusterPlan) -> String {
        "Preparing in memory".into()
    }

    async fn prepare(&self, plan: &mut ClusterPlan) -> anyhow::Result<()> {
        self.call("prepare")?;
        plan.image_digest = Some(PREPARED_DIGEST.into());
        Ok(())
    }

    async fn create(&self, plan: &mut ClusterPlan, specs: &SpecMaker<'_>) -> anyhow::Result<()> {
        // Half the nodes are made before a failure: undo must cope.
        if let Some(first) = plan.nodes.first() {
            specs(plan, 0)?;
            self.nodes.lock().unwrap().insert(first.name.clone(), true);
        }
        self.call("create")?;
        for i in 0..plan.nodes.len() {
            let spec = specs(plan, i)?;
            assert_eq!(spec.name, plan.nodes[i].name);
            self.nodes.lock().unwrap().insert(spec.name, true);
        }
        let interrupt = self.interrupt_in_create.lock().unwrap().take();
        if let Some(interrupt) = interrupt {
            let _ = interrupt.send(());
            std::future::pending::<()>().await;
        }
        Ok(())
    }

    async fn start(&self, plan: &mut ClusterPlan) -> anyhow::Result<bool> {
        self.call("start")?;
        for running in self.nodes.lock().unwrap().values_mut() {
            *running = true;
        }
        // The provider handed out another address this time.
        plan.nodes[0].address = Some(Ipv4Addr::new(10, 0, 0, 99));
        Ok(true)
    }

    async fn stop(&self, plan: &ClusterPlan) -> anyhow::Result<Vec<String>> {
        self.call("stop")?;
        let mut nodes = self.nodes.lock().unwrap();
        Ok(plan
            .nodes
            .iter()
            .map(|n| {
                nodes.insert(n.name.clone(), false);
                format!("{}: stopped", n.name)
            })
            .collect())
    }

    async fn delete(&self, plan: &ClusterPlan) -> anyhow::Result<Vec<String>> {
        if let Some(dirs) = &self.records {
            *self.record_at_delete.lock().unwrap() =
                Some(ClusterDir::new(dirs, &plan.name).dir.exists());
        }
        self.call("delete")?;
        let mut nodes = self.nodes.lock().unwrap();
        Ok(plan
            .nodes
            .iter()
            .filter(|n| nodes.remove(&n.name).is_some())
            .map(|n| n.name.clone())
            .collect())
    }

    fn is_running(&self, node: &str) -> bool {
        self.nodes.lock().unwrap().get(node) == Some(&true)
    }

    fn exec(
        &self,
        node: &str,
        argv: &[&str],
        _stdin: &mut dyn Read,
        _timeout: Duration,
    ) -> anyhow::Result<Vec<u8>> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("exec {node} {}", argv.join(" ")));
        anyhow::ensure!(self.is_running(node), "node {node} is not running");
        anyhow::ensure!(argv == ["cat", STATUS_PATH], "unexpected exec {argv:?}");
        let mut status = NodeStatus::new(node, "vm");
        for phase in &mut status.phases {
            phase.state = PhaseState::Ok;
        }
        if self.failing_node == Some(node)
            && let Some(last) = status.phases.last_mut()
        {
            last.state = PhaseState::Failed;
            last.message = "told to fail".into();
        }
        Ok(serde_json::to_vec(&status)?)
    }

    fn check_alive(&self, node: &str, _last: &mut String) -> anyhow::Result<bool> {
        self.calls.lock().unwrap().push(format!("alive {node}"));
        Ok(true)
    }

    fn where_to_look(&self, node: &str) -> Option<String> {
        Some(format!("memory of {node}"))
    }

    fn collect_logs(&self, _node: &str, _out: &Path, _errors: &mut Vec<String>) {}
}

struct World {
    _dir: tempfile::TempDir,
    dirs: KinaDirs,
    kubeconfig: KubeconfigFiles,
    config: ClusterConfig,
}

/// The build of the image the double's `prepare` says the nodes boot.
const PREPARED_DIGEST: &str = "sha256:5eed";

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let dirs = KinaDirs::at(dir.path().join("data"), dir.path().join("cache"));
    let kubeconfig = KubeconfigFiles {
        env: Some(dir.path().join("kubeconfig").into_os_string()),
        home: dir.path().to_path_buf(),
    };
    World {
        _dir: dir,
        dirs,
        kubeconfig,
        config: ClusterConfig::parse(TWO_NODES).unwrap(),
    }
}

fn request<'a>(world: &'a World, retain: bool) -> UpRequest<'a> {
    UpRequest {
        name: "mem".into(),
        config: &world.config,
        image: "kina.local/node:base".into(),
        kubernetes_version: None,
        stop_after: None,
        wait: Duration::from_secs(20),
        retain,
        kubeconfig: Some(world.kubeconfig.clone()),
        cwd: world.dirs.data().to_path_buf(),
    }
}

async fn run_up(world: &World, provider: &RecordingProvider, retain: bool) -> anyhow::Result<()> {
    let mut no_interrupt = std::future::pending::<()>();
    up(
        provider,
        &world.dirs,
        request(world, retain),
        &Steps::new(true),
        &mut no_interrupt,
    )
    .await
}

fn recording(world: &World) -> RecordingProvider {
    RecordingProvider {
        records: Some(world.dirs.clone()),
        ..RecordingProvider::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn up_runs_its_steps_in_order_and_keeps_the_record() {
    let world = world();
    let provider = recording(&world);
    run_up(&world, &provider, false).await.unwrap();
    assert_eq!(
        provider.steps(),
        ["refusals", "shape", "check_free", "prepare", "create"]
    );
    // The wait read both nodes' status through exec.
    let calls = provider.calls();
    for node in ["mem-control-plane", "mem-worker"] {
        assert!(
            calls.contains(&format!("exec {node} cat {STATUS_PATH}")),
            "{calls:?}"
        );
    }
    let plan = ClusterDir::new(&world.dirs, "mem").load("mem").unwrap();
    assert_eq!(plan.provider, ProviderKind::Qemu);
    assert_eq!(plan.nodes[1].address, Some(Ipv4Addr::new(10, 0, 0, 3)));
    // What prepare learnt about the image is kept with the cluster.
    assert_eq!(plan.image_digest.as_deref(), Some(PREPARED_DIGEST));
    assert_eq!(record::names(&world.dirs), ["mem"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_at_any_step_undoes_the_steps_before_it_in_reverse_and_leaves_no_record() {
    // (the failed step, what runs after it: its undoing and that of the
    // steps before it that made something)
    let cases: [(&str, &[&str]); 2] = [("prepare", &[]), ("create", &["delete"])];
    for (fail_at, undone) in cases {
        let world = world();
        let provider = RecordingProvider {
            fail_at: Some(fail_at),
            ..recording(&world)
        };
        let err = format!("{:#}", run_up(&world, &provider, false).await.unwrap_err());
        assert!(err.contains(&format!("{fail_at} failed")), "{err}");
        assert!(err.contains("everything it made was removed"), "{err}");
        let steps = provider.steps();
        let failed = steps.iter().position(|c| c == fail_at).unwrap();
        assert_eq!(&steps[failed + 1..], undone, "fail at {fail_at}: {steps:?}");
        // The nodes (made or half made) were deleted while the record
        // still named them; the record went last.
        if !undone.is_empty() {
            assert_eq!(*provider.record_at_delete.lock().unwrap(), Some(true));
        }
        assert!(provider.nodes.lock().unwrap().is_empty());
        assert!(!ClusterDir::new(&world.dirs, "mem").dir.exists());
        assert!(record::names(&world.dirs).is_empty());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_fails_its_boot_fails_up_naming_it_and_is_removed() {
    let world = world();
    let provider = RecordingProvider {
        failing_node: Some("mem-worker"),
        ..recording(&world)
    };
    let err = format!("{:#}", run_up(&world, &provider, false).await.unwrap_err());
    assert!(err.contains("node mem-worker: phase"), "{err}");
    assert!(err.contains("memory of mem-worker"), "{err}");
    assert_eq!(provider.steps().last().map(String::as_str), Some("delete"));
    assert!(!ClusterDir::new(&world.dirs, "mem").dir.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn retain_keeps_what_was_made_after_a_failure() {
    let world = world();
    let provider = RecordingProvider {
        failing_node: Some("mem-control-plane"),
        ..recording(&world)
    };
    let err = format!("{:#}", run_up(&world, &provider, true).await.unwrap_err());
    assert!(err.contains("--retain"), "{err}");
    assert!(!provider.steps().contains(&"delete".to_string()));
    assert_eq!(provider.nodes.lock().unwrap().len(), 2);
    assert!(ClusterDir::new(&world.dirs, "mem").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_in_the_middle_of_a_step_undoes_it_and_the_steps_before() {
    let world = world();
    let (fire, interrupted) = tokio::sync::oneshot::channel();
    let provider = RecordingProvider {
        interrupt_in_create: Mutex::new(Some(fire)),
        ..recording(&world)
    };
    let mut interrupt = std::pin::pin!(async move {
        let _ = interrupted.await;
    });
    let err = up(
        &provider,
        &world.dirs,
        request(&world, false),
        &Steps::new(true),
        &mut interrupt,
    )
    .await
    .unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("interrupted"), "{err}");
    assert_eq!(
        provider.steps(),
        [
            "refusals",
            "shape",
            "check_free",
            "prepare",
            "create",
            "delete"
        ]
    );
    assert!(provider.nodes.lock().unwrap().is_empty());
    assert!(!ClusterDir::new(&world.dirs, "mem").dir.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_up_of_the_same_name_is_refused_before_the_provider_makes_anything() {
    let world = world();
    let provider = recording(&world);
    run_up(&world, &provider, false).await.unwrap();
    let again = recording(&world);
    let err = format!("{:#}", run_up(&world, &again, false).await.unwrap_err());
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(again.steps(), ["refusals"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_start_and_down_go_through_the_provider_and_the_record_follows() {
    let world = world();
    let provider = recording(&world);
    run_up(&world, &provider, false).await.unwrap();
    let record = ClusterDir::new(&world.dirs, "mem");
    let progress = Steps::new(true);

    let plan = record.load("mem").unwrap();
    let lines = lifecycle::stop(&provider, &plan, &progress).await.unwrap();
    assert_eq!(lines, ["mem-control-plane: stopped", "mem-worker: stopped"]);
    assert!(!provider.is_running("mem-worker"));

    lifecycle::start(
        &provider,
        &world.dirs,
        plan,
        Duration::from_secs(20),
        &progress,
    )
    .await
    .unwrap();
    assert!(provider.is_running("mem-worker"));
    // The address the provider handed out at start is in the record.
    let plan = record.load("mem").unwrap();
    assert_eq!(plan.nodes[0].address, Some(Ipv4Addr::new(10, 0, 0, 99)));

    let deleted = lifecycle::down(&provider, &world.dirs, &plan, &world.kubeconfig, &progress)
        .await
        .unwrap();
    assert_eq!(deleted, ["mem-control-plane", "mem-worker"]);
    assert!(!record.dir.exists());
    assert_eq!(
        provider.steps(),
        [
            "refusals",
            "shape",
            "check_free",
            "prepare",
            "create",
            "stop",
            "start",
            "delete"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_start_is_reported_and_the_cluster_is_kept() {
    let world = world();
    let provider = recording(&world);
    run_up(&world, &provider, false).await.unwrap();
    let failing = RecordingProvider {
        fail_at: Some("start"),
        ..recording(&world)
    };
    let plan = ClusterDir::new(&world.dirs, "mem").load("mem").unwrap();
    let err = lifecycle::start(
        &failing,
        &world.dirs,
        plan,
        Duration::from_secs(5),
        &Steps::new(true),
    )
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("start failed"), "{err:#}");
    assert_eq!(failing.steps(), ["start"]);
    assert!(ClusterDir::new(&world.dirs, "mem").exists());
}

/// A node image missing from the store, got by writing into the
/// provider's call list (a test double: no store, no build, no registry).
struct MissingImage<'a> {
    provider: &'a RecordingProvider,
    obtain_fails: bool,
}

impl kina::cluster::up::NodeImage for MissingImage<'_> {
    fn missing(&self) -> anyhow::Result<Option<String>> {
        Ok(Some("Building node image in memory".into()))
    }

    async fn obtain(&self) -> anyhow::Result<()> {
        self.provider.call("obtain image")?;
        anyhow::ensure!(!self.obtain_fails, "the build failed (told to)");
        Ok(())
    }

    fn kubernetes_version(&self) -> anyhow::Result<Option<String>> {
        Ok(None)
    }
}

async fn run_up_missing(
    world: &World,
    provider: &RecordingProvider,
    obtain_fails: bool,
) -> anyhow::Result<()> {
    let image = MissingImage {
        provider,
        obtain_fails,
    };
    let mut no_interrupt = std::future::pending::<()>();
    kina::cluster::up::up_with_image(
        provider,
        &world.dirs,
        request(world, false),
        &image,
        &Steps::new(true),
        &mut no_interrupt,
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_image_is_got_after_the_refusals_and_before_the_plan_and_kept_when_up_fails() {
    let world = world();
    let provider = recording(&world);
    run_up_missing(&world, &provider, false).await.unwrap();
    assert_eq!(
        provider.steps(),
        [
            "refusals",
            "obtain image",
            "shape",
            "check_free",
            "prepare",
            "create"
        ]
    );
    // A later step fails: the cluster's steps are undone, the image is not.
    let world = self::world();
    let failing = RecordingProvider {
        fail_at: Some("create"),
        ..recording(&world)
    };
    run_up_missing(&world, &failing, false).await.unwrap_err();
    assert_eq!(
        failing.steps(),
        [
            "refusals",
            "obtain image",
            "shape",
            "check_free",
            "prepare",
            "create",
            "delete"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_that_cannot_be_had_fails_up_before_anything_is_made_and_a_taken_name_before_the_image()
 {
    let world = world();
    let provider = recording(&world);
    let err = run_up_missing(&world, &provider, true).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("the build failed") && text.contains("nothing of the cluster was made"),
        "{text}"
    );
    assert_eq!(provider.steps(), ["refusals", "obtain image"]);
    assert!(!ClusterDir::new(&world.dirs, "mem").exists());

    // A name already taken is refused without building anything.
    run_up(&world, &provider, false).await.unwrap();
    let again = recording(&world);
    let err = run_up_missing(&world, &again, false).await.unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err:#}");
    assert_eq!(again.steps(), ["refusals"]);
}
