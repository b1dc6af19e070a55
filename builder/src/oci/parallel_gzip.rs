//! gzip compression spread over every core, with output that depends only on
//! the input: the way pigz does it, the stream is cut into fixed-size blocks,
//! each block is deflated on its own with the 32 KiB before it as preset
//! dictionary and ends on a byte boundary (a sync flush), and the blocks are
//! joined into one gzip member whose CRC-32 is combined from the blocks'.
//!
//! The bytes differ from a single-stream deflate of the same input (each
//! block restarts its match search), but they are a function of the input,
//! [`BLOCK_SIZE`], the level and the deflate implementation alone: never of
//! the number of threads or of scheduling. Every gzip reader reads them as
//! one ordinary member.
//!
//! One pool of worker threads serves every layer of every platform being
//! built, so compression runs in parallel across layers and platforms, and
//! within a layer.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, Sender, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// Bytes of input per independently compressed block. Part of the output
/// format: changing it changes every layer digest.
pub const BLOCK_SIZE: usize = 1 << 20;
/// deflate's window: the preset dictionary of each block after the first.
const DICT_SIZE: usize = 32 * 1024;
/// Blocks one writer may have queued or in compression at once; bounds memory
/// to a few MiB per layer being written.
const IN_FLIGHT_PER_WRITER: usize = 8;

/// gzip header (RFC 1952): deflate, no flags, no mtime, no extra flags,
/// OS unknown, so nothing of the build host enters the blob.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

struct Job {
    dictionary: Option<Arc<Vec<u8>>>,
    block: Arc<Vec<u8>>,
    last: bool,
    level: u32,
    reply: SyncSender<io::Result<Compressed>>,
}

struct Compressed {
    deflate: Vec<u8>,
    crc: Crc,
}

/// The shared workers: one per available core.
fn pool() -> &'static Mutex<Sender<Job>> {
    static POOL: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (sender, receiver) = std::sync::mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        for index in 0..workers {
            let receiver = Arc::clone(&receiver);
            // A worker that cannot start leaves the others to do the work;
            // with none at all, `submit` compresses on the caller's thread.
            let _ = std::thread::Builder::new()
                .name(format!("kina-gzip-{index}"))
                .spawn(move || worker(&receiver));
        }
        Mutex::new(sender)
    })
}

fn worker(receiver: &Mutex<Receiver<Job>>) {
    loop {
        let job = match receiver.lock() {
            Ok(r) => r.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let result = compress_block(&job);
        // The writer may have given up (an error elsewhere); nothing to do.
        let _ = job.reply.send(result);
    }
}

fn compress_block(job: &Job) -> io::Result<Compressed> {
    let mut deflate = Compress::new(Compression::new(job.level), false);
    if let Some(dictionary) = &job.dictionary {
        deflate
            .set_dictionary(dictionary)
            .map_err(|e| io::Error::other(format!("deflate dictionary: {e}")))?;
    }
    let flush = if job.last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(job.block.len() / 2 + 1024);
    let mut consumed = 0;
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let before_in = deflate.total_in();
        let before_out = deflate.total_out();
        let status = deflate
            .compress_vec(&job.block[consumed..], &mut out, flush)
            .map_err(|e| io::Error::other(format!("deflate: {e}")))?;
        consumed += (deflate.total_in() - before_in) as usize;
        let progressed = deflate.total_out() != before_out || deflate.total_in() != before_in;
        let done = match status {
            Status::StreamEnd => true,
            // A sync flush is complete once all input is taken and the
            // output buffer was not filled to the brim.
            Status::Ok | Status::BufError => {
                !job.last && consumed == job.block.len() && out.len() < out.capacity()
            }
        };
        if done {
            break;
        }
        if !progressed && out.len() < out.capacity() {
            return Err(io::Error::other("deflate made no progress"));
        }
    }
    let mut crc = Crc::new();
    crc.update(&job.block);
    Ok(Compressed { deflate: out, crc })
}

/// A writer that gzips what it is given on the shared pool and writes the
/// member, in order, to `inner`.
pub struct ParallelGzWriter<W: Write> {
    inner: W,
    level: u32,
    buffer: Vec<u8>,
    previous: Option<Arc<Vec<u8>>>,
    pending: VecDeque<Receiver<io::Result<Compressed>>>,
    crc: Crc,
    header_written: bool,
}

impl<W: Write> ParallelGzWriter<W> {
    pub fn new(inner: W, level: u32) -> Self {
        Self {
            inner,
            level,
            buffer: Vec::with_capacity(BLOCK_SIZE),
            previous: None,
            pending: VecDeque::new(),
            crc: Crc::new(),
            header_written: false,
        }
    }

    fn submit(&mut self, last: bool) -> io::Result<()> {
        let block = Arc::new(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(BLOCK_SIZE),
        ));
        let dictionary = self.previous.as_ref().map(|previous| {
            let start = previous.len().saturating_sub(DICT_SIZE);
            Arc::new(previous[start..].to_vec())
        });
        let (reply, receiver) = sync_channel(1);
        let job = Job {
            dictionary,
            block: Arc::clone(&block),
            last,
            level: self.level,
            reply,
        };
        let sent = match pool().lock() {
            Ok(sender) => sender.send(job).map_err(|e| e.0),
            Err(_) => Err(job),
        };
        if let Err(job) = sent {
            // No pool: compress here; the bytes are the same.
            let result = compress_block(&job);
            let _ = job.reply.send(result);
        }
        self.pending.push_back(receiver);
        self.previous = Some(block);
        while self.pending.len() >= IN_FLIGHT_PER_WRITER {
            self.write_oldest()?;
        }
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        let Some(receiver) = self.pending.pop_front() else {
            return Ok(());
        };
        let compressed = receiver
            .recv()
            .map_err(|_| io::Error::other("a gzip worker stopped"))??;
        if !self.header_written {
            self.inner.write_all(&HEADER)?;
            self.header_written = true;
        }
        self.inner.write_all(&compressed.deflate)?;
        self.crc.combine(&compressed.crc);
        Ok(())
    }

    /// Compresses what is buffered, writes the trailer and returns `inner`.
    pub fn finish(mut self) -> io::Result<W> {
        self.submit(true)?;
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        self.inner.write_all(&self.crc.sum().to_le_bytes())?;
        self.inner.write_all(&self.crc.amount().to_le_bytes())?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for ParallelGzWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = BLOCK_SIZE - self.buffer.len();
        let n = room.min(buf.len());
        self.buffer.extend_from_slice(&buf[..n]);
        if self.buffer.len() == BLOCK_SIZE {
            self.submit(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn gzip(data: &[u8], chunk: usize) -> Vec<u8> {
        let mut w = ParallelGzWriter::new(Vec::new(), 6);
        for part in data.chunks(chunk.max(1)) {
            w.write_all(part).unwrap();
        }
        w.finish().unwrap()
    }

    fn sample(len: usize) -> Vec<u8> {
        // Compressible but not trivial: text with a slowly changing counter.
        let mut v = Vec::with_capacity(len);
        let mut i = 0u64;
        while v.len() < len {
            v.extend_from_slice(format!("line {} of the layer {}\n", i, i / 7).as_bytes());
            i += 1;
        }
        v.truncate(len);
        v
    }

    #[test]
    fn output_is_one_gzip_member_that_any_reader_decodes() {
        for len in [
            0,
            1,
            BLOCK_SIZE - 1,
            BLOCK_SIZE,
            BLOCK_SIZE + 1,
            3 * BLOCK_SIZE + 17,
        ] {
            let data = sample(len);
            let gz = gzip(&data, 4096);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(gz.as_slice())
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "length {len}");
            // MultiGzDecoder would hide a second member; GzDecoder stops at one.
            let mut multi = Vec::new();
            flate2::read::MultiGzDecoder::new(gz.as_slice())
                .read_to_end(&mut multi)
                .unwrap();
            assert_eq!(multi, data);
        }
    }

    #[test]
    fn the_bytes_do_not_depend_on_how_the_input_is_written() {
        let data = sample(2 * BLOCK_SIZE + 12345);
        let a = gzip(&data, 1 << 16);
        let b = gzip(&data, 777);
        let c = gzip(&data, data.len());
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert!(a.len() < data.len() / 3, "blocks share their dictionary");
    }
}
