//! A gRPC channel to containerd's unix socket, for the clients kina-init
//! runs in a node: the CRI's (`cri.rs`, as the kubelet asks) and
//! containerd's own API (`image_import`, as `ctr` asks). Both are one-shot
//! and synchronous, like the rest of kina-init, so each owns a
//! current-thread runtime.

use std::path::Path;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// Where containerd serves the CRI and its own API in a node.
pub const SOCKET: &str = "/run/containerd/containerd.sock";

/// How long connecting to the socket may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `socket`; the error names the socket and says what to check.
pub fn connect(socket: &Path) -> Result<(tokio::runtime::Runtime, Channel), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting a runtime for a containerd client: {e}"))?;
    let path = socket.to_path_buf();
    // The URI is required by tonic but unused: the connector below dials
    // the socket whatever it says.
    let endpoint = Endpoint::from_static("http://[::1]").connect_timeout(CONNECT_TIMEOUT);
    let channel = runtime
        .block_on(endpoint.connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                tokio::net::UnixStream::connect(path)
                    .await
                    .map(TokioIo::new)
            }
        })))
        .map_err(|e| {
            format!(
                "cannot connect to containerd at {}: {} (is containerd running? `kina-init status` shows the containerd phase)",
                socket.display(),
                error_chain(&e)
            )
        })?;
    Ok((runtime, channel))
}

/// `e` and its sources, `: `-separated (tonic's transport error says
/// little on its own), each source once: some already print theirs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}
