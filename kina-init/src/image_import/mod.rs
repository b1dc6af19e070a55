//! Images into a node's containerd through containerd's own API, as
//! `ctr images import` puts them there (containerd `client/import.go` and
//! `client/image.go` `Unpack`), without shipping `ctr` (27 MB in Debian's
//! containerd package, the largest file a node would carry for one task):
//! the blobs of an OCI layout or archive go into the content store, each
//! index entry becomes an image named as ctr names it, the garbage
//! collector's labels tie index to manifests to config and layers, and the
//! image for this node's platform is unpacked into the snapshotter the CRI
//! uses. Everything happens under a lease, so a collection running
//! meanwhile takes nothing; a failed import releases it, and a killed one
//! leaves nothing that lasts past its expiry (a day).
//!
//! Used by the images phase (the layout a node image preloads) and by
//! `kina-init images import` (`kina load`, over the node's exec channel).
//! An archive from `docker save` before Docker 25 (a `manifest.json`
//! without `index.json`) is refused by name: `kina load` checks that on
//! the host before any node sees it.

pub mod oci;
mod unpack;
mod write;

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::{
    CreateImageRequest, CreateRequest, DeleteRequest, Image, InfoRequest, ReadContentRequest,
    UpdateImageRequest, UpdateRequest,
};
use containerd_client::types::Descriptor as WireDescriptor;
use tonic::transport::Channel;

use crate::containerd_socket;
use oci::{Document, Kind};

/// JSON documents (indexes, manifests, configs) up to this size are kept
/// from the stream for the walk, instead of being read back from
/// containerd; image-spec puts no limit on them, registries 4 MiB.
const KEEP_UP_TO: u64 = 4 << 20;

/// What one index entry became.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Imported {
    pub name: String,
    /// The entry's digest: the image's target.
    pub digest: String,
    /// Of the image's layers, how many were unpacked by this import (the
    /// rest were there already).
    pub layers_applied: usize,
    pub layers: usize,
}

#[derive(Debug)]
pub struct ImportError(pub String);

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ImportError {}

fn status_error(what: &str, status: &tonic::Status) -> ImportError {
    ImportError(format!(
        "containerd refused to {what}: {} ({:?})",
        status.message(),
        status.code()
    ))
}

/// A connection to containerd holding an import lease, which
/// [`Importer::finish`] releases once the images hold what they need.
pub struct Importer {
    runtime: tokio::runtime::Runtime,
    channel: Channel,
    namespace: String,
    snapshotter: String,
    lease: String,
    /// Small blobs seen in this import's input, by digest.
    documents: HashMap<String, Vec<u8>>,
    blobs_written: usize,
    blobs_present: usize,
}

impl Importer {
    /// Connects to containerd at `socket` and takes a lease in `namespace`
    /// (`k8s.io` for what the kubelet sees) that expires in a day, as
    /// containerd's client leases do.
    pub fn connect(socket: &Path, namespace: &str, snapshotter: &str) -> Result<Self, ImportError> {
        let (runtime, channel) = containerd_socket::connect(socket).map_err(ImportError)?;
        let now = time::OffsetDateTime::now_utc();
        let expire = (now + time::Duration::days(1))
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| ImportError(format!("formatting the lease's expiry: {e}")))?;
        let lease = format!(
            "kina-import-{}-{}",
            std::process::id(),
            now.unix_timestamp_nanos()
        );
        let mut importer = Self {
            runtime,
            channel,
            namespace: namespace.to_string(),
            snapshotter: snapshotter.to_string(),
            lease: String::new(),
            documents: HashMap::new(),
            blobs_written: 0,
            blobs_present: 0,
        };
        let request = importer.request(CreateRequest {
            id: lease.clone(),
            labels: HashMap::from([("containerd.io/gc.expire".to_string(), expire)]),
        })?;
        let mut client = LeasesClient::new(importer.channel.clone());
        importer
            .runtime
            .block_on(client.create(request))
            .map_err(|s| status_error(&format!("create lease {lease}"), &s))?;
        importer.lease = lease;
        Ok(importer)
    }

    /// A request in this importer's namespace and, once taken, under its
    /// lease (containerd reads both from gRPC metadata).
    fn request<T>(&self, message: T) -> Result<tonic::Request<T>, ImportError> {
        let mut request = tonic::Request::new(message);
        let metadata = request.metadata_mut();
        let value = |v: &str, what: &str| {
            v.parse()
                .map_err(|_| ImportError(format!("{what} `{v}` cannot be sent to containerd")))
        };
        metadata.insert("containerd-namespace", value(&self.namespace, "namespace")?);
        if !self.lease.is_empty() {
            metadata.insert("containerd-lease", value(&self.lease, "lease")?);
        }
        Ok(request)
    }

    /// Imports an OCI archive (a tar of an OCI layout, as `kina load image`
    /// exports one and `docker save` since Docker 25 and `skopeo copy
    /// oci-archive:` write them), read once from `input`.
    pub fn import_archive(&mut self, input: impl Read) -> Result<Vec<Imported>, ImportError> {
        let mut archive = tar::Archive::new(input);
        let mut index = None;
        let mut docker_manifest = false;
        let entries = archive
            .entries()
            .map_err(|e| ImportError(format!("reading the image archive: {e}")))?;
        for entry in entries {
            let mut entry =
                entry.map_err(|e| ImportError(format!("reading the image archive: {e}")))?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = entry
                .path()
                .map_err(|e| ImportError(format!("an entry of the image archive: {e}")))?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string();
            let size = entry.size();
            if path == "index.json" {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).map_err(|e| {
                    ImportError(format!("reading index.json from the archive: {e}"))
                })?;
                index = Some(bytes);
            } else if path == "manifest.json" {
                docker_manifest = true;
            } else if let Some(digest) = oci::blob_digest(&path) {
                self.put_blob(&digest, size, &mut entry)?;
            }
        }
        let index = index.ok_or_else(|| {
            ImportError(if docker_manifest {
                "the archive is a `docker save` archive from before Docker 25 (manifest.json, no index.json): save it with Docker 25 or later, or convert it with `skopeo copy docker-archive:FILE oci-archive:OUT`".into()
            } else {
                "the archive has no index.json: it is not an OCI image archive".into()
            })
        })?;
        self.record(&index)
    }

    /// Imports the OCI layout in `dir` (what a node image preloads).
    pub fn import_layout(&mut self, dir: &Path) -> Result<Vec<Imported>, ImportError> {
        let index_path = dir.join("index.json");
        let index = std::fs::read(&index_path)
            .map_err(|e| ImportError(format!("reading {}: {e}", index_path.display())))?;
        for algorithm in ["sha256", "sha512"] {
            let blobs = dir.join("blobs").join(algorithm);
            let listing = match std::fs::read_dir(&blobs) {
                Ok(listing) => listing,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(ImportError(format!("listing {}: {e}", blobs.display()))),
            };
            let mut names = listing
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ImportError(format!("listing {}: {e}", blobs.display())))?;
            names.sort();
            for name in names {
                let relative = format!("blobs/{algorithm}/{}", name.to_string_lossy());
                let Some(digest) = oci::blob_digest(&relative) else {
                    continue;
                };
                let path = dir.join(&relative);
                let mut file = std::fs::File::open(&path)
                    .map_err(|e| ImportError(format!("opening {}: {e}", path.display())))?;
                let size = file
                    .metadata()
                    .map_err(|e| ImportError(format!("reading {}: {e}", path.display())))?
                    .len();
                self.put_blob(&digest, size, &mut file)?;
            }
        }
        self.record(&index)
    }

    /// A blob into the content store unless it is there already; a small
    /// one is kept for the walk.
    fn put_blob(
        &mut self,
        digest: &str,
        size: u64,
        input: &mut dyn Read,
    ) -> Result<(), ImportError> {
        let mut kept = None;
        if size <= KEEP_UP_TO {
            let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or_default());
            input
                .read_to_end(&mut bytes)
                .map_err(|e| ImportError(format!("reading blob {digest}: {e}")))?;
            kept = Some(bytes);
        }
        if self.has_blob(digest)? {
            self.blobs_present += 1;
        } else {
            match &kept {
                Some(bytes) => write::write_blob(self, digest, size, &mut bytes.as_slice())?,
                None => write::write_blob(self, digest, size, input)?,
            }
            self.blobs_written += 1;
        }
        if let Some(bytes) = kept {
            self.documents.insert(digest.to_string(), bytes);
        }
        Ok(())
    }

    fn has_blob(&self, digest: &str) -> Result<bool, ImportError> {
        let request = self.request(InfoRequest {
            digest: digest.to_string(),
        })?;
        let mut client = ContentClient::new(self.channel.clone());
        match self.runtime.block_on(client.info(request)) {
            Ok(_) => Ok(true),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(false),
            Err(s) => Err(status_error(&format!("look up blob {digest}"), &s)),
        }
    }

    /// A document by digest: from this import's input, else from the
    /// content store (blobs an earlier import put there).
    fn document(&self, digest: &str) -> Result<Vec<u8>, ImportError> {
        if let Some(bytes) = self.documents.get(digest) {
            return Ok(bytes.clone());
        }
        let request = self.request(ReadContentRequest {
            digest: digest.to_string(),
            offset: 0,
            size: 0,
        })?;
        let mut client = ContentClient::new(self.channel.clone());
        self.runtime.block_on(async {
            let mut stream = client
                .read(request)
                .await
                .map_err(|s| {
                    status_error(&format!("read blob {digest} (the archive lacks it)"), &s)
                })?
                .into_inner();
            let mut bytes = Vec::new();
            while let Some(chunk) = stream
                .message()
                .await
                .map_err(|s| status_error(&format!("read blob {digest}"), &s))?
            {
                bytes.extend_from_slice(&chunk.data);
                if bytes.len() as u64 > KEEP_UP_TO {
                    return Err(ImportError(format!(
                        "blob {digest} is over {KEEP_UP_TO} bytes: not an image document"
                    )));
                }
            }
            Ok(bytes)
        })
    }

    /// Sets labels on a blob, the way containerd's `content.Store.Update`
    /// with `labels.KEY` field paths does (other labels stay).
    fn label_blob(&self, digest: &str, labels: Vec<(String, String)>) -> Result<(), ImportError> {
        if labels.is_empty() {
            return Ok(());
        }
        let paths = labels.iter().map(|(k, _)| format!("labels.{k}")).collect();
        let request = self.request(UpdateRequest {
            info: Some(containerd_client::services::v1::Info {
                digest: digest.to_string(),
                labels: labels.into_iter().collect(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths }),
        })?;
        let mut client = ContentClient::new(self.channel.clone());
        self.runtime
            .block_on(client.update(request))
            .map_err(|s| status_error(&format!("label blob {digest}"), &s))?;
        Ok(())
    }

    /// The walk after the blobs are in: per index entry, the garbage
    /// collection labels down to the manifest for this node, the image
    /// record, and the unpacked snapshot.
    fn record(&mut self, index: &[u8]) -> Result<Vec<Imported>, ImportError> {
        let document: Document = serde_json::from_slice(index)
            .map_err(|e| ImportError(format!("index.json is not an OCI image index: {e}")))?;
        let entries = document
            .manifests
            .ok_or_else(|| ImportError("index.json lists no manifests".into()))?;
        let architecture = oci::node_architecture();
        let today = time::OffsetDateTime::now_utc().date();
        let date = format!(
            "{:04}-{:02}-{:02}",
            today.year(),
            u8::from(today.month()),
            today.day()
        );
        let mut imported = Vec::new();
        for entry in entries
            .iter()
            .filter(|e| oci::runs_here(e.platform.as_ref(), architecture))
        {
            let name = oci::image_name(&entry.annotations)
                .unwrap_or_else(|| oci::digest_name(&date, &entry.digest));
            let manifest = self.label_down(entry, architecture, &name)?;
            self.put_image(&name, entry)?;
            let (layers_applied, layers) = unpack::unpack(self, &name, &manifest)?;
            imported.push(Imported {
                name,
                digest: entry.digest.clone(),
                layers_applied,
                layers,
            });
        }
        if imported.is_empty() {
            return Err(ImportError(format!(
                "index.json has {} entr(ies), none for linux/{architecture}",
                entries.len()
            )));
        }
        Ok(imported)
    }

    /// Labels `descriptor`'s document with its children (those for this
    /// node's platform) and goes down to the manifest that runs here.
    fn label_down(
        &self,
        descriptor: &oci::Descriptor,
        architecture: &str,
        name: &str,
    ) -> Result<Document, ImportError> {
        let mut current = descriptor.clone();
        // An index of indexes is allowed; a cycle is not, so the depth is bounded.
        for _ in 0..8 {
            let bytes = self.document(&current.digest)?;
            let document: Document = serde_json::from_slice(&bytes).map_err(|e| {
                ImportError(format!(
                    "{name}: {} is not an image document: {e}",
                    current.digest
                ))
            })?;
            match oci::kind_of(&current.media_type, &document) {
                Some(Kind::Manifest) => {
                    let config = document.config.as_ref().ok_or_else(|| {
                        ImportError(format!("{name}: manifest {} has no config", current.digest))
                    })?;
                    let mut children = vec![config];
                    children.extend(document.layers.iter().flatten());
                    self.label_blob(
                        &current.digest,
                        oci::child_gc_labels(&Kind::Manifest, &children),
                    )?;
                    return Ok(document);
                }
                Some(Kind::Index) => {
                    let here: Vec<&oci::Descriptor> = document
                        .manifests
                        .iter()
                        .flatten()
                        .filter(|m| oci::runs_here(m.platform.as_ref(), architecture))
                        .collect();
                    self.label_blob(&current.digest, oci::child_gc_labels(&Kind::Index, &here))?;
                    let first = here.first().ok_or_else(|| {
                        ImportError(format!(
                            "{name}: index {} has no manifest for linux/{architecture}",
                            current.digest
                        ))
                    })?;
                    current = (*first).clone();
                }
                None => {
                    return Err(ImportError(format!(
                        "{name}: {} has media type `{}`, neither an image index nor a manifest",
                        current.digest, current.media_type
                    )));
                }
            }
        }
        Err(ImportError(format!(
            "{name}: indexes nested more than 8 deep under {}",
            descriptor.digest
        )))
    }

    /// The image record: updated when the name exists, created otherwise
    /// (containerd `client/import.go`).
    fn put_image(&self, name: &str, target: &oci::Descriptor) -> Result<(), ImportError> {
        let image = Image {
            name: name.to_string(),
            target: Some(WireDescriptor {
                media_type: target.media_type.clone(),
                digest: target.digest.clone(),
                size: target.size,
                annotations: target.annotations.clone(),
            }),
            ..Default::default()
        };
        let mut client = ImagesClient::new(self.channel.clone());
        let update = self.request(UpdateImageRequest {
            image: Some(image.clone()),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["target".into()],
            }),
            source_date_epoch: None,
        })?;
        match self.runtime.block_on(client.update(update)) {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::NotFound => {
                let create = self.request(CreateImageRequest {
                    image: Some(image),
                    source_date_epoch: None,
                })?;
                self.runtime
                    .block_on(client.create(create))
                    .map(drop)
                    .map_err(|s| status_error(&format!("create image {name}"), &s))
            }
            Err(s) => Err(status_error(&format!("update image {name}"), &s)),
        }
    }

    /// Releases the lease synchronously, as containerd's client does
    /// (`leases.SynchronousDelete`): the garbage collector runs before this
    /// returns, so what the import recorded is held by its images' labels
    /// alone from here on, and a missing label shows now, not later.
    /// Returns how many blobs were written and how many were there.
    pub fn finish(mut self) -> Result<(usize, usize), ImportError> {
        let released = self.release_lease(true);
        self.lease.clear();
        released.map(|()| (self.blobs_written, self.blobs_present))
    }

    fn release_lease(&self, sync: bool) -> Result<(), ImportError> {
        let request = self.request(DeleteRequest {
            id: self.lease.clone(),
            sync,
        })?;
        let mut client = LeasesClient::new(self.channel.clone());
        self.runtime
            .block_on(client.delete(request))
            .map(drop)
            .map_err(|s| status_error(&format!("release lease {}", self.lease), &s))
    }
}

/// A failed import gives its lease back too, as containerd's client does
/// (its `WithLease` done function runs on every return): what it wrote and
/// no image holds is then the collector's. Should that fail as well, the
/// lease still expires within a day.
impl Drop for Importer {
    fn drop(&mut self) {
        if !self.lease.is_empty() {
            let _ = self.release_lease(false);
        }
    }
}

/// One line per imported image, as `kina load` shows them.
pub fn render(imported: &[Imported], snapshotter: &str) -> String {
    imported
        .iter()
        .map(|i| {
            format!(
                "imported {} ({}), unpacked into {snapshotter}: {} of {} layer(s) applied\n",
                i.name, i.digest, i.layers_applied, i.layers
            )
        })
        .collect()
}
