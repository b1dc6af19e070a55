//! A small CRI client for looking into a node's containerd the way the
//! kubelet does: `kina-init cri pull IMAGE` and `kina-init cri images`.
//!
//! Debian packages no crictl, and `ctr` talks containerd's own API, which
//! does not read the CRI plugin's registry settings (`config_path`, the
//! `hosts.toml` files kind's local-registry recipe writes) unless told to
//! with `--hosts-dir`. A pull through the CRI's `ImageService` is what the
//! kubelet asks for, so it is the check that a registry patch works.
//! The messages and the gRPC client are the `k8s-cri` crate's (generated
//! from the Kubernetes `runtime.v1` protobuf); the transport is tonic over
//! containerd's unix socket.

use std::path::{Path, PathBuf};

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::{Image, ImageSpec, ImageStatusRequest, ListImagesRequest, PullImageRequest};
use tonic::transport::Channel;

use crate::containerd_socket;
pub use crate::containerd_socket::SOCKET;

/// An image as the CRI reports it: what `crictl inspecti` shows.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CriImage {
    /// The image ID containerd gives the kubelet (its config's digest).
    pub id: String,
    pub repo_tags: Vec<String>,
    /// `NAME@sha256:…`: the digest of the manifest or index the name
    /// resolved to in the registry.
    pub repo_digests: Vec<String>,
    pub size: u64,
}

impl From<Image> for CriImage {
    fn from(image: Image) -> Self {
        Self {
            id: image.id,
            repo_tags: image.repo_tags,
            repo_digests: image.repo_digests,
            size: image.size,
        }
    }
}

/// What `cri pull` reports: the reference the CRI's `PullImage` returned
/// and the image's status after it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pulled {
    /// The name pulled, as given.
    pub image: String,
    /// `PullImageResponse.image_ref`.
    pub image_ref: String,
    pub status: CriImage,
}

/// Why a CRI call failed, naming the socket and what was asked.
#[derive(Debug)]
pub struct CriError(String);

impl std::fmt::Display for CriError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CriError {}

/// A CRI image client on a unix socket, with the runtime it runs on: the
/// subcommands are one-shot and synchronous, like the rest of kina-init's.
pub struct CriClient {
    runtime: tokio::runtime::Runtime,
    client: ImageServiceClient<Channel>,
    socket: PathBuf,
}

impl CriClient {
    /// Connects to the CRI at `socket`.
    pub fn connect(socket: &Path) -> Result<Self, CriError> {
        let (runtime, channel) = containerd_socket::connect(socket).map_err(CriError)?;
        Ok(Self {
            runtime,
            client: ImageServiceClient::new(channel),
            socket: socket.to_path_buf(),
        })
    }

    /// `PullImage` of `image` with no credentials (the registry settings in
    /// containerd's configuration apply, as for the kubelet), then its
    /// `ImageStatus`.
    pub fn pull(&mut self, image: &str) -> Result<Pulled, CriError> {
        let spec = ImageSpec {
            image: image.to_string(),
            ..Default::default()
        };
        let request = PullImageRequest {
            image: Some(spec.clone()),
            ..Default::default()
        };
        let image_ref = self
            .runtime
            .block_on(self.client.pull_image(request))
            .map_err(|s| self.status_error(&format!("pull {image}"), &s))?
            .into_inner()
            .image_ref;
        let status = self
            .runtime
            .block_on(self.client.image_status(ImageStatusRequest {
                image: Some(ImageSpec {
                    image: image_ref.clone(),
                    ..spec
                }),
                verbose: false,
            }))
            .map_err(|s| self.status_error(&format!("status of {image_ref}"), &s))?
            .into_inner()
            .image
            .ok_or_else(|| {
                CriError(format!(
                    "the CRI at {} pulled {image} as {image_ref} but then knows no such image",
                    self.socket.display()
                ))
            })?;
        Ok(Pulled {
            image: image.to_string(),
            image_ref,
            status: status.into(),
        })
    }

    /// `ListImages`: every image the kubelet would see.
    pub fn images(&mut self) -> Result<Vec<CriImage>, CriError> {
        let listed = self
            .runtime
            .block_on(self.client.list_images(ListImagesRequest { filter: None }))
            .map_err(|s| self.status_error("list images", &s))?
            .into_inner();
        Ok(listed.images.into_iter().map(CriImage::from).collect())
    }

    fn status_error(&self, what: &str, status: &tonic::Status) -> CriError {
        CriError(format!(
            "the CRI at {} refused to {what}: {} ({:?})",
            self.socket.display(),
            status.message(),
            status.code()
        ))
    }
}

/// One line per name of `image` (tags, else digests, else `<none>`), as
/// crictl's `images` lists them: name, image ID, size.
pub fn render_images(images: &[CriImage]) -> String {
    let mut out = String::new();
    for image in images {
        let names: Vec<&String> = if image.repo_tags.is_empty() {
            image.repo_digests.iter().collect()
        } else {
            image.repo_tags.iter().collect()
        };
        if names.is_empty() {
            out.push_str(&format!("<none>  {}  {}\n", image.id, image.size));
        }
        for name in names {
            out.push_str(&format!("{name}  {}  {}\n", image.id, image.size));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_socket_is_named_with_what_to_check() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("no-containerd.sock");
        let Err(e) = CriClient::connect(&socket) else {
            panic!("connected to a socket that does not exist");
        };
        let text = e.to_string();
        assert!(text.contains(&socket.display().to_string()), "{text}");
        assert!(text.contains("is containerd running?"), "{text}");
    }

    #[test]
    fn images_are_listed_by_tag_else_by_digest() {
        let images = [
            CriImage {
                id: "sha256:aa".into(),
                repo_tags: vec!["localhost:5001/app:v1".into()],
                repo_digests: vec!["localhost:5001/app@sha256:bb".into()],
                size: 10,
            },
            CriImage {
                id: "sha256:cc".into(),
                repo_tags: vec![],
                repo_digests: vec!["localhost:5001/app@sha256:dd".into()],
                size: 20,
            },
            CriImage {
                id: "sha256:ee".into(),
                repo_tags: vec![],
                repo_digests: vec![],
                size: 30,
            },
        ];
        assert_eq!(
            render_images(&images),
            "localhost:5001/app:v1  sha256:aa  10\n\
             localhost:5001/app@sha256:dd  sha256:cc  20\n\
             <none>  sha256:ee  30\n"
        );
    }
}
