//! One blob into containerd's content store over its `Write` stream
//! (containerd `api/services/content/v1/content.proto`): WRITE messages
//! carry the bytes at their offsets, a COMMIT checks the size and digest.
//! The gRPC stream must own its messages, and a tar entry cannot leave the
//! thread reading the archive, so the stream runs on a scoped thread and
//! this one hands it 1 MiB pieces over a small channel: a layer of any size
//! passes through without being held whole.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::{WriteAction, WriteContentRequest};
use tokio::sync::mpsc::error::TrySendError;

use super::{ImportError, Importer, status_error};

const CHUNK: usize = 1 << 20;

pub fn write_blob(
    importer: &Importer,
    digest: &str,
    size: u64,
    input: &mut dyn Read,
) -> Result<(), ImportError> {
    let total = i64::try_from(size)
        .map_err(|_| ImportError(format!("blob {digest}: size {size} is out of range")))?;
    // One ref per digest: a write a killed import left under it is
    // restarted from offset 0, which every content store must accept.
    let reference = format!("kina-import-{digest}");
    let (sender, receiver) = tokio::sync::mpsc::channel::<WriteContentRequest>(4);
    let requests = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|m| (m, receiver))
    });
    let request = importer.request(requests)?;
    let answered = AtomicBool::new(false);
    let message = |action: WriteAction, offset: i64, data: Vec<u8>| WriteContentRequest {
        action: action.into(),
        r#ref: reference.clone(),
        total,
        expected: digest.to_string(),
        offset,
        data,
        labels: Default::default(),
    };
    std::thread::scope(|scope| {
        let call = scope.spawn(|| {
            let mut client = ContentClient::new(importer.channel.clone());
            let answer = importer.runtime.block_on(async {
                let mut responses = client.write(request).await?.into_inner();
                while let Some(response) = responses.message().await? {
                    if response.action == i32::from(WriteAction::Commit) {
                        return Ok(Some(response.digest));
                    }
                }
                Ok::<_, tonic::Status>(None)
            });
            answered.store(true, Ordering::Release);
            answer
        });
        // Sends unless containerd has answered (refused) meanwhile.
        let send = |mut pending: WriteContentRequest| -> bool {
            loop {
                match sender.try_send(pending) {
                    Ok(()) => return true,
                    Err(TrySendError::Closed(_)) => return false,
                    Err(TrySendError::Full(back)) => {
                        if answered.load(Ordering::Acquire) {
                            return false;
                        }
                        pending = back;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        };
        let read = (|| {
            let mut buffer = vec![0u8; CHUNK];
            let mut offset: i64 = 0;
            loop {
                let n = input
                    .read(&mut buffer)
                    .map_err(|e| format!("reading blob {digest}: {e}"))?;
                if n == 0 {
                    break;
                }
                let piece = message(WriteAction::Write, offset, buffer[..n].to_vec());
                offset += n as i64;
                if !send(piece) {
                    return Ok(()); // containerd's answer says why
                }
            }
            if offset != total {
                return Err(format!(
                    "blob {digest}: the input holds {offset} bytes, its entry says {total}"
                ));
            }
            // A refused commit shows in containerd's answer.
            send(message(WriteAction::Commit, offset, Vec::new()));
            Ok(())
        })();
        // Ends the stream (without a commit when reading failed).
        drop(sender);
        let answer = call
            .join()
            .map_err(|_| ImportError(format!("the write of blob {digest} panicked")))?;
        read.map_err(ImportError)?;
        match answer {
            Ok(Some(written)) if written == digest => Ok(()),
            Ok(Some(written)) => Err(ImportError(format!(
                "containerd stored blob {digest} as {written}"
            ))),
            Ok(None) => Err(ImportError(format!(
                "containerd ended the write of blob {digest} without committing it"
            ))),
            Err(s) if s.code() == tonic::Code::AlreadyExists => Ok(()),
            Err(s) => Err(status_error(&format!("store blob {digest}"), &s)),
        }
    })
}
