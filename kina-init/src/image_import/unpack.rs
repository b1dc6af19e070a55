//! An imported image's layers into the snapshotter, as containerd's client
//! unpacks them (`client/image.go` `Unpack`, `core/rootfs/apply.go`
//! `ApplyLayerWithOpts`): per layer, a snapshot named by its chain ID is
//! prepared on its parent, the diff service applies the layer into its
//! mounts and reports the uncompressed digest, which must be the config's
//! diff ID, and the snapshot is committed. Then the labels that keep it:
//! the layer's uncompressed digest, and the config's reference to the top
//! snapshot for the garbage collector.

use std::collections::HashMap;

use containerd_client::services::v1::ApplyRequest;
use containerd_client::services::v1::diff_client::DiffClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::types::Descriptor as WireDescriptor;

use super::oci::{self, Config, Document};
use super::{ImportError, Importer, status_error};

/// Unpacks `manifest` of image `name`: how many layers this call applied
/// and how many the image has.
pub fn unpack(
    importer: &Importer,
    name: &str,
    manifest: &Document,
) -> Result<(usize, usize), ImportError> {
    let config_descriptor = manifest
        .config
        .as_ref()
        .ok_or_else(|| ImportError(format!("{name}: its manifest has no config")))?;
    let config: Config = serde_json::from_slice(&importer.document(&config_descriptor.digest)?)
        .map_err(|e| ImportError(format!("{name}: config {}: {e}", config_descriptor.digest)))?;
    let architecture = oci::node_architecture();
    if config.os != "linux" || config.architecture != architecture {
        return Err(ImportError(format!(
            "{name} is for {}/{}; this node is linux/{architecture}",
            config.os, config.architecture
        )));
    }
    let layers: Vec<&oci::Descriptor> = manifest
        .layers
        .iter()
        .flatten()
        .filter(|l| oci::is_layer(&l.media_type))
        .collect();
    let diff_ids = &config.rootfs.diff_ids;
    if layers.len() != diff_ids.len() {
        return Err(ImportError(format!(
            "{name}: its manifest has {} layer(s), its config {} diff ID(s)",
            layers.len(),
            diff_ids.len()
        )));
    }
    let chain = oci::chain_ids(diff_ids);
    let mut parent = String::new();
    let mut applied = 0;
    for ((layer, diff_id), chain_id) in layers.iter().zip(diff_ids).zip(&chain) {
        if !snapshot_exists(importer, chain_id)? {
            apply_layer(importer, name, layer, diff_id, chain_id, &parent)?;
            importer.label_blob(
                &layer.digest,
                vec![("containerd.io/uncompressed".into(), diff_id.clone())],
            )?;
            applied += 1;
        }
        parent = chain_id.clone();
    }
    if let Some(top) = chain.last() {
        importer.label_blob(
            &config_descriptor.digest,
            vec![(
                format!("containerd.io/gc.ref.snapshot.{}", importer.snapshotter),
                top.clone(),
            )],
        )?;
    }
    Ok((applied, layers.len()))
}

fn snapshot_exists(importer: &Importer, chain_id: &str) -> Result<bool, ImportError> {
    let mut client = SnapshotsClient::new(importer.channel.clone());
    let request = importer.request(StatSnapshotRequest {
        snapshotter: importer.snapshotter.clone(),
        key: chain_id.to_string(),
    })?;
    match importer.runtime.block_on(client.stat(request)) {
        Ok(_) => Ok(true),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(false),
        Err(s) => Err(status_error(
            &format!("look up snapshot {chain_id} in {}", importer.snapshotter),
            &s,
        )),
    }
}

fn apply_layer(
    importer: &Importer,
    name: &str,
    layer: &oci::Descriptor,
    diff_id: &str,
    chain_id: &str,
    parent: &str,
) -> Result<(), ImportError> {
    let mut snapshots = SnapshotsClient::new(importer.channel.clone());
    // containerd's own key form, `extract-<unique> <chain ID>`.
    let key = format!(
        "extract-{}-{} {chain_id}",
        std::process::id(),
        time::OffsetDateTime::now_utc().unix_timestamp_nanos()
    );
    let labels = HashMap::from([(
        "containerd.io/snapshot.ref".to_string(),
        chain_id.to_string(),
    )]);
    let prepare = importer.request(PrepareSnapshotRequest {
        snapshotter: importer.snapshotter.clone(),
        key: key.clone(),
        parent: parent.to_string(),
        labels: labels.clone(),
    })?;
    let mounts = importer
        .runtime
        .block_on(snapshots.prepare(prepare))
        .map_err(|s| {
            status_error(
                &format!("prepare a snapshot for {name}'s layer {}", layer.digest),
                &s,
            )
        })?
        .into_inner()
        .mounts;
    // Ok(false): another unpack of the same layers committed it first.
    let result = (|| {
        let apply = importer.request(ApplyRequest {
            diff: Some(WireDescriptor {
                media_type: layer.media_type.clone(),
                digest: layer.digest.clone(),
                size: layer.size,
                annotations: layer.annotations.clone(),
            }),
            mounts,
            payloads: HashMap::new(),
            sync_fs: false,
        })?;
        let applied = importer
            .runtime
            .block_on(DiffClient::new(importer.channel.clone()).apply(apply))
            .map_err(|s| status_error(&format!("apply {name}'s layer {}", layer.digest), &s))?
            .into_inner()
            .applied
            .map(|d| d.digest)
            .unwrap_or_default();
        if applied != diff_id {
            return Err(ImportError(format!(
                "{name}'s layer {} unpacks to {applied}, its config says {diff_id}: the image is damaged",
                layer.digest
            )));
        }
        let commit = importer.request(CommitSnapshotRequest {
            snapshotter: importer.snapshotter.clone(),
            name: chain_id.to_string(),
            key: key.clone(),
            labels,
        })?;
        match importer.runtime.block_on(snapshots.commit(commit)) {
            Ok(_) => Ok(true),
            Err(s) if s.code() == tonic::Code::AlreadyExists => Ok(false),
            Err(s) => Err(status_error(&format!("commit snapshot {chain_id}"), &s)),
        }
    })();
    if !matches!(result, Ok(true)) {
        let remove = importer.request(RemoveSnapshotRequest {
            snapshotter: importer.snapshotter.clone(),
            key,
        })?;
        // The prepared snapshot is the lease's too: a failed removal only
        // leaves it until the lease expires.
        let _ = importer.runtime.block_on(snapshots.remove(remove));
    }
    result.map(drop)
}
