//! The exec channel's framing, fuzzed: whatever bytes arrive on the
//! virtio-serial port, the decoder ends cleanly, yields whole frames, or
//! says what is wrong, without believing a hostile length field; and frames
//! written by one side come back unchanged on the other, however the stream
//! is cut into reads and however the frames of several requests interleave.

// Integration test: helpers outside #[test] functions fail the test by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{self, Read};

use kina_contract::exec::{
    EXIT, Exit, Frame, HEADER_LEN, MAX_PAYLOAD, REQUEST, Request, STDERR, STDIN, STDIN_EOF, STDOUT,
};
use proptest::prelude::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A port that hands out `data` in reads of the given sizes (cycled), with
/// an `Interrupted` error before the reads marked so, as a signal would.
struct SplitReader {
    data: Vec<u8>,
    pos: usize,
    splits: Vec<usize>,
    interrupts: Vec<bool>,
    reads: usize,
}

impl SplitReader {
    fn new(data: Vec<u8>, splits: Vec<usize>, interrupts: Vec<bool>) -> Self {
        Self {
            data,
            pos: 0,
            splits,
            interrupts,
            reads: 0,
        }
    }
}

impl Read for SplitReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let i = self.reads;
        self.reads += 1;
        let slot = i % self.interrupts.len().max(1);
        if self.interrupts.get(slot) == Some(&true) {
            // Each flag interrupts once; the retry reads for real.
            self.interrupts[slot] = false;
            return Err(io::Error::from(io::ErrorKind::Interrupted));
        }
        let split = self.splits[i % self.splits.len()].max(1);
        let n = split.min(buf.len()).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A port that serves `prefix` and then zeros forever, counting what it gave.
struct Endless {
    prefix: Vec<u8>,
    served: usize,
}

impl Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        for b in buf.iter_mut() {
            *b = self.prefix.get(self.served).copied().unwrap_or(0);
            self.served += 1;
        }
        Ok(buf.len())
    }
}

/// What reading a byte stream to its end should give, worked out from the
/// wire format by hand: whole frames, then a clean end or the error kind.
fn model(bytes: &[u8]) -> (Vec<Frame>, Option<io::ErrorKind>) {
    let mut frames = Vec::new();
    let mut rest = bytes;
    loop {
        if rest.is_empty() {
            return (frames, None);
        }
        if rest.len() < HEADER_LEN {
            return (frames, Some(io::ErrorKind::UnexpectedEof));
        }
        let len = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) as u64;
        if len > MAX_PAYLOAD as u64 {
            return (frames, Some(io::ErrorKind::InvalidData));
        }
        let len = len as usize;
        if rest.len() < HEADER_LEN + len {
            return (frames, Some(io::ErrorKind::UnexpectedEof));
        }
        frames.push(Frame {
            kind: rest[0],
            id: u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]),
            payload: rest[HEADER_LEN..HEADER_LEN + len].to_vec(),
        });
        rest = &rest[HEADER_LEN + len..];
    }
}

/// Reads frames until the end or the first error.
fn read_all(r: &mut impl Read) -> (Vec<Frame>, Option<io::Error>) {
    let mut frames = Vec::new();
    loop {
        match Frame::read_from(r) {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => return (frames, None),
            Err(e) => return (frames, Some(e)),
        }
    }
}

/// One id's stdout, stderr and exit status as read back.
type Received = (Vec<u8>, Vec<u8>, Option<Exit>);

fn kinds() -> impl Strategy<Value = u8> {
    prop_oneof![
        4 => prop_oneof![
            Just(REQUEST),
            Just(STDIN),
            Just(STDIN_EOF),
            Just(STDOUT),
            Just(STDERR),
            Just(EXIT),
        ],
        1 => any::<u8>(),
    ]
}

fn payloads() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => prop::collection::vec(any::<u8>(), 0..64),
        2 => prop::collection::vec(any::<u8>(), 0..2048),
        1 => (any::<u8>(), prop_oneof![Just(MAX_PAYLOAD), Just(MAX_PAYLOAD - 1), Just(0usize)])
            .prop_map(|(b, n)| vec![b; n]),
    ]
}

fn frames() -> impl Strategy<Value = Frame> {
    (
        kinds(),
        prop_oneof![3 => 0u32..4, 1 => any::<u32>()],
        payloads(),
    )
        .prop_map(|(kind, id, payload)| Frame { kind, id, payload })
}

/// Bytes that look like frames often enough to get past the first header:
/// real frames with garbage, hostile lengths and truncation mixed in.
fn hostile_streams() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        3 => frames().prop_map(|f| f.encode()),
        1 => prop::collection::vec(any::<u8>(), 0..32),
        1 => (kinds(), any::<u32>(), any::<u32>(), prop::collection::vec(any::<u8>(), 0..32))
            .prop_map(|(k, id, len, tail)| {
                let mut b = vec![k];
                b.extend_from_slice(&id.to_be_bytes());
                b.extend_from_slice(&len.to_be_bytes());
                b.extend(tail);
                b
            }),
    ];
    prop::collection::vec(piece, 0..6).prop_map(|pieces| pieces.concat())
}

fn splits() -> impl Strategy<Value = (Vec<usize>, Vec<bool>)> {
    (
        prop::collection::vec(prop_oneof![3 => 1usize..12, 1 => 1usize..40_000], 1..16),
        prop::collection::vec(prop::bool::weighted(0.2), 0..8),
    )
}

fn assert_clear(err: &io::Error) {
    let text = err.to_string();
    match err.kind() {
        io::ErrorKind::InvalidData => {
            assert!(text.contains("not a kina exec stream"), "{text}");
        }
        io::ErrorKind::UnexpectedEof => {
            assert!(text.contains("exec channel closed"), "{text}");
        }
        other => panic!("unexpected error kind {other:?}: {text}"),
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// Any bytes at all: the decoder never panics, returns exactly the
    /// whole frames the bytes hold, and stops with a clean end or with an
    /// error that names the exec channel (never a silent partial frame).
    #[test]
    fn any_byte_stream_decodes_as_the_wire_format_says(
        bytes in prop_oneof![
            1 => prop::collection::vec(any::<u8>(), 0..256),
            3 => hostile_streams(),
        ],
        (split, interrupts) in splits(),
    ) {
        let (want_frames, want_err) = model(&bytes);
        let mut port = SplitReader::new(bytes.clone(), split, interrupts);
        let (frames, err) = read_all(&mut port);
        prop_assert_eq!(&frames, &want_frames);
        prop_assert_eq!(err.as_ref().map(io::Error::kind), want_err);
        if let Some(e) = &err {
            assert_clear(e);
        }
        for f in &frames {
            prop_assert!(f.payload.len() <= MAX_PAYLOAD);
        }
    }

    /// A length field above MAX_PAYLOAD is refused after the header alone:
    /// nothing more is read (or allocated for), however much the port offers.
    #[test]
    fn a_hostile_length_is_refused_after_the_header(
        kind in any::<u8>(),
        id in any::<u32>(),
        len in prop_oneof![
            Just(MAX_PAYLOAD as u32 + 1),
            Just(u32::MAX),
            (MAX_PAYLOAD as u32 + 1)..=u32::MAX,
        ],
    ) {
        let mut header = vec![kind];
        header.extend_from_slice(&id.to_be_bytes());
        header.extend_from_slice(&len.to_be_bytes());
        let mut port = Endless { prefix: header, served: 0 };
        let err = Frame::read_from(&mut port).unwrap_err();
        prop_assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        prop_assert!(err.to_string().contains(&format!("{len} bytes exceeds {MAX_PAYLOAD}")), "{}", err);
        prop_assert_eq!(port.served, HEADER_LEN);
    }

    /// Frames written one after another come back as themselves, whatever
    /// reads the port splits them into, with signals interrupting reads.
    #[test]
    fn frames_round_trip_through_arbitrary_partial_reads(
        sent in prop::collection::vec(frames(), 0..12),
        (split, interrupts) in splits(),
    ) {
        let bytes: Vec<u8> = sent.iter().flat_map(Frame::encode).collect();
        for f in &sent {
            prop_assert_eq!(f.encode().len(), HEADER_LEN + f.payload.len());
        }
        let mut port = SplitReader::new(bytes, split, interrupts);
        let (got, err) = read_all(&mut port);
        prop_assert!(err.is_none(), "{:?}", err);
        prop_assert_eq!(got, sent);
    }

    /// The port closing mid-stream: every frame written in full before the
    /// cut is read, then a clean end if the cut fell between frames, else an
    /// end-of-stream error that says the exec channel closed.
    #[test]
    fn a_stream_cut_anywhere_gives_the_whole_frames_then_a_clear_end(
        sent in prop::collection::vec(frames(), 1..8),
        cut in any::<prop::sample::Index>(),
        (split, interrupts) in splits(),
    ) {
        let bytes: Vec<u8> = sent.iter().flat_map(Frame::encode).collect();
        let cut = cut.index(bytes.len() + 1);
        let mut boundary = 0;
        let mut whole = Vec::new();
        for f in &sent {
            let next = boundary + f.encode().len();
            if next > cut {
                break;
            }
            whole.push(f.clone());
            boundary = next;
        }
        let mut port = SplitReader::new(bytes[..cut].to_vec(), split, interrupts);
        let (got, err) = read_all(&mut port);
        prop_assert_eq!(got, whole);
        if boundary == cut {
            prop_assert!(err.is_none(), "{:?}", err);
        } else {
            let err = err.unwrap();
            prop_assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
            assert_clear(&err);
        }
    }

    /// Several requests' output interleaved on one port (a client that gave
    /// up leaves its frames behind): each id's stdout and stderr come back
    /// byte for byte by filtering on the id, every frame fits MAX_PAYLOAD,
    /// and each id ends with its own exit status.
    #[test]
    fn interleaved_requests_stay_separate(
        outputs in prop::collection::btree_map(
            any::<u32>(),
            (
                prop_oneof![
                    3 => prop::collection::vec(any::<u8>(), 0..200),
                    1 => (any::<u8>(), 0usize..(3 * MAX_PAYLOAD)).prop_map(|(b, n)| vec![b; n]),
                ],
                prop::collection::vec(any::<u8>(), 0..100),
                any::<Option<i32>>(),
            ),
            1..5,
        ),
        order in prop::collection::vec(any::<prop::sample::Index>(), 0..64),
        (split, interrupts) in splits(),
    ) {
        // Each id's frames in order; the interleaving picks which id's next
        // frame goes on the wire.
        let mut queues: Vec<Vec<Frame>> = outputs
            .iter()
            .map(|(id, (out, err, code))| {
                let mut q: Vec<Frame> = Frame::chunks(STDOUT, *id, out)
                    .chain(Frame::chunks(STDERR, *id, err))
                    .collect();
                let exit = Exit { code: *code, signal: None, error: None };
                q.push(Frame { kind: EXIT, id: *id, payload: serde_json::to_vec(&exit).unwrap() });
                q.reverse();
                q
            })
            .collect();
        let mut wire = Vec::new();
        let mut picks = order.iter();
        while queues.iter().any(|q| !q.is_empty()) {
            let open: Vec<usize> = (0..queues.len()).filter(|i| !queues[*i].is_empty()).collect();
            let i = picks.next().map_or(open[0], |p| open[p.index(open.len())]);
            let f = queues[i].pop().unwrap();
            prop_assert!(f.payload.len() <= MAX_PAYLOAD);
            wire.extend(f.encode());
        }
        let mut port = SplitReader::new(wire, split, interrupts);
        let (got, err) = read_all(&mut port);
        prop_assert!(err.is_none(), "{:?}", err);
        let mut seen: BTreeMap<u32, Received> = BTreeMap::new();
        for f in got {
            let entry = seen.entry(f.id).or_default();
            prop_assert!(entry.2.is_none(), "frame after the exit of {}", f.id);
            match f.kind {
                STDOUT => entry.0.extend(f.payload),
                STDERR => entry.1.extend(f.payload),
                EXIT => entry.2 = Some(serde_json::from_slice(&f.payload).unwrap()),
                k => panic!("unexpected kind {k}"),
            }
        }
        prop_assert_eq!(seen.len(), outputs.len());
        for (id, (out, err, code)) in &outputs {
            let (got_out, got_err, exit) = &seen[id];
            prop_assert_eq!(got_out, out);
            prop_assert_eq!(got_err, err);
            prop_assert_eq!(exit.as_ref().and_then(|e| e.code), *code);
        }
    }

    /// Requests and exit statuses survive the JSON in their payloads, and
    /// any payload bytes at all are refused or accepted without a panic.
    #[test]
    fn request_and_exit_payloads_round_trip(
        argv in prop::collection::vec(any::<String>(), 0..6),
        poweroff in any::<bool>(),
        exit in (any::<Option<i32>>(), any::<Option<i32>>(), any::<Option<String>>()),
        junk in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let request = if poweroff { Request::Poweroff } else { Request::Exec { argv } };
        let back: Request = serde_json::from_slice(&serde_json::to_vec(&request).unwrap()).unwrap();
        prop_assert_eq!(back, request);
        let exit = Exit { code: exit.0, signal: exit.1, error: exit.2 };
        let back: Exit = serde_json::from_slice(&serde_json::to_vec(&exit).unwrap()).unwrap();
        prop_assert_eq!(back, exit);
        let _ = serde_json::from_slice::<Request>(&junk);
        let _ = serde_json::from_slice::<Exit>(&junk);
    }
}
