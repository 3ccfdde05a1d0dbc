//! `Buffer::open` (crash recovery) on a folder of damaged files, then
//! reading everything back.
//!
//! Input: either a segment file as it is (it starts with `PIPEWB`: real
//! segments are seeds), laid down as `00000000000000000000.seg`; or a
//! [`Plan`] built with `arbitrary`: up to three segments, each raw bytes or
//! records written by the real codec and then damaged (cut, flipped bits,
//! inserted or removed bytes), with valid or broken headers, plus
//! `gaps.log`, `id`, the consumers' committed offset and whether to append
//! after recovery.
//!
//! Checks, when `open` succeeds:
//! - a reader from `first_offset()` returns consecutive offsets, stepping
//!   only over the gaps `gaps.log` lists, up to `next_offset()`, or fails
//!   with `Corrupt`;
//! - the active (last) segment, which recovery scanned, reads back whole;
//! - opening again changes nothing (same offsets, same files);
//! - a record appended after recovery gets `next_offset()` and reads back
//!   after another reopen (recovery left nothing in front of it).
//!
//! Allocation is bounded by libFuzzer's `-malloc_limit_mb` (`scripts/fuzz`).
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use pipe_ingest::buffer::{segment, Buffer, BufferOptions, Gap, Record};

#[derive(Arbitrary, Debug)]
struct Plan {
    segments: Vec<SegmentPlan>,
    gaps: Option<GapsPlan>,
    /// The `id` file's bytes; none: no file (open makes one).
    id: Option<Vec<u8>>,
    min_next_offset: u8,
    append: Option<Vec<u8>>,
}

#[derive(Arbitrary, Debug)]
struct SegmentPlan {
    /// The segment's first offset, as a step from where the previous one
    /// ended (negative: overlapping it).
    step: i8,
    header: HeaderPlan,
    body: BodyPlan,
}

#[derive(Arbitrary, Debug)]
enum HeaderPlan {
    Valid,
    /// A header naming another first offset than the file name.
    Offset(u8),
    /// The first bytes of a valid header.
    Cut(u8),
    Raw([u8; 16]),
}

#[derive(Arbitrary, Debug)]
enum BodyPlan {
    Records {
        payloads: Vec<Vec<u8>>,
        /// Added to the expected first record offset.
        skew: i8,
        damage: Vec<Damage>,
    },
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Damage {
    Truncate(u16),
    Flip(u16, u8),
    Insert(u16, Vec<u8>),
    Remove(u16, u8),
}

#[derive(Arbitrary, Debug)]
enum GapsPlan {
    Lines(Vec<(u16, u16)>),
    Raw(Vec<u8>),
}

fn scratch_root() -> &'static Path {
    static ROOT: OnceLock<std::path::PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        // tmpfs when there is one: recovery fsyncs.
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        }
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    })
}

/// One salt for every segment laid down: the same input, the same bytes.
const SALT: segment::Salt = segment::Salt::from_bytes(*b"fuzzsalt");

fn options() -> BufferOptions {
    BufferOptions {
        segment_bytes: 256,
        ..BufferOptions::default()
    }
}

fn lay_down(dir: &Path, plan: &Plan) {
    let mut end: u64 = 0;
    for s in plan.segments.iter().take(3) {
        let first = end.saturating_add_signed(s.step as i64);
        let mut bytes = match &s.header {
            HeaderPlan::Valid => segment::encode_header(first, SALT).to_vec(),
            HeaderPlan::Offset(o) => segment::encode_header(*o as u64, SALT).to_vec(),
            HeaderPlan::Cut(n) => {
                segment::encode_header(first, SALT)[..*n as usize % segment::HEADER_LEN].to_vec()
            }
            HeaderPlan::Raw(h) => h.to_vec(),
        };
        end = first;
        match &s.body {
            BodyPlan::Raw(raw) => bytes.extend_from_slice(raw),
            BodyPlan::Records {
                payloads,
                skew,
                damage,
            } => {
                let start = first.saturating_add_signed(*skew as i64);
                let mut body = Vec::new();
                for (i, p) in payloads.iter().take(16).enumerate() {
                    segment::encode_record(&mut body, SALT, start + i as u64, p);
                }
                for d in damage.iter().take(4) {
                    apply(&mut body, d);
                }
                bytes.extend_from_slice(&body);
                end = start + payloads.len().min(16) as u64;
            }
        }
        std::fs::write(dir.join(segment::file_name(first)), bytes).unwrap();
    }
    match &plan.gaps {
        None => {}
        Some(GapsPlan::Lines(lines)) => {
            let text: String = lines.iter().map(|(a, b)| format!("{a} {b}\n")).collect();
            std::fs::write(dir.join("gaps.log"), text).unwrap();
        }
        Some(GapsPlan::Raw(raw)) => std::fs::write(dir.join("gaps.log"), raw).unwrap(),
    }
    if let Some(id) = &plan.id {
        std::fs::write(dir.join("id"), id).unwrap();
    }
}

fn apply(body: &mut Vec<u8>, damage: &Damage) {
    let at = |i: u16, len: usize| if len == 0 { 0 } else { i as usize % (len + 1) };
    match damage {
        Damage::Truncate(n) => body.truncate(at(*n, body.len())),
        Damage::Flip(i, bit) if !body.is_empty() => {
            let i = *i as usize % body.len();
            body[i] ^= 1 << (bit % 8);
        }
        Damage::Flip(..) => {}
        Damage::Insert(i, bytes) => {
            let i = at(*i, body.len());
            body.splice(i..i, bytes.iter().copied());
        }
        Damage::Remove(i, n) => {
            let i = at(*i, body.len());
            let end = (i + *n as usize).min(body.len());
            body.drain(i..end);
        }
    }
}

/// The gaps `gaps.log` lists, as the buffer reads them.
fn gaps(dir: &Path) -> Vec<Gap> {
    let Ok(text) = std::fs::read_to_string(dir.join("gaps.log")) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut p = l.split_whitespace().map(str::parse::<u64>);
            match (p.next(), p.next()) {
                (Some(Ok(from)), Some(Ok(to))) => Some(Gap { from, to }),
                _ => None,
            }
        })
        .collect()
}

/// Every file of the folder with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// The segments in the folder, by first offset.
fn segments(dir: &Path) -> Vec<u64> {
    let mut out: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| segment::parse_file_name(e.ok()?.file_name().to_str()?))
        .collect();
    out.sort_unstable();
    out
}

/// Reads from `from` to the durable end; checks offsets step by one or
/// over a listed gap. Returns the records, and the error that stopped
/// the read, if one did.
fn read_all(buffer: &Buffer, from: u64, gaps: &[Gap]) -> (Vec<Record>, Option<pipe_ingest::Error>) {
    let mut reader = buffer.reader(from);
    let mut out: Vec<Record> = Vec::new();
    loop {
        match reader.read(1000, usize::MAX) {
            Ok(got) if got.is_empty() => break,
            Ok(got) => {
                for r in got {
                    let ok = match out.last() {
                        None => {
                            r.offset == from
                                || gaps
                                    .iter()
                                    .any(|g| g.from <= from && from < g.to && g.to == r.offset)
                        }
                        Some(prev) => {
                            r.offset == prev.offset + 1
                                || gaps.contains(&Gap {
                                    from: prev.offset + 1,
                                    to: r.offset,
                                })
                        }
                    };
                    assert!(
                        ok,
                        "record {} after {:?} (from {from}, gaps {gaps:?})",
                        r.offset,
                        out.last().map(|p| p.offset)
                    );
                    out.push(r);
                }
            }
            Err(e) => {
                assert!(matches!(e, pipe_ingest::Error::Corrupt(_)), "{e}");
                return (out, Some(e));
            }
        }
    }
    assert_eq!(
        reader.position(),
        buffer.next_offset(),
        "the reader stopped short"
    );
    (out, None)
}

fn run(dir: &Path, min_next: u64, append: Option<&[u8]>) {
    let Ok(buffer) = Buffer::open(dir, options(), min_next) else {
        return;
    };
    let first = buffer.first_offset();
    let next = buffer.next_offset();
    assert!(next >= min_next);
    assert!(first <= next, "first {first} > next {next}");
    let gaps = gaps(dir);
    let (_, _) = read_all(&buffer, first, &gaps);
    // Recovery scanned the active segment: it reads back whole.
    let active = *segments(dir).last().expect("an open buffer has a segment");
    assert!(active <= next);
    let (records, err) = read_all(&buffer, active, &gaps);
    assert!(
        err.is_none(),
        "the active segment does not read back: {err:?}"
    );
    let files = snapshot(dir);
    drop(buffer);

    // Recovery is done: opening again finds nothing to do.
    let mut buffer = Buffer::open(dir, options(), min_next).expect("reopening a recovered buffer");
    assert_eq!(buffer.next_offset(), next);
    assert_eq!(buffer.first_offset(), first);
    assert_eq!(snapshot(dir), files, "a second open changed the folder");

    let Some(payload) = append else {
        return;
    };
    // The writer runs on the runtime's blocking pool.
    let _runtime = runtime().enter();
    let (appender, writer) = buffer.start_writer();
    let offset = runtime().block_on(async {
        let offset = appender.append(payload.to_vec()).await.expect("an append");
        drop(appender);
        writer.await.expect("the writer task").expect("the writer");
        offset
    });
    assert_eq!(offset, next);
    drop(buffer);
    let buffer = Buffer::open(dir, options(), min_next).expect("reopening after an append");
    assert_eq!(buffer.next_offset(), next + 1);
    let (again, err) = read_all(&buffer, active, &gaps);
    assert!(err.is_none(), "after an append: {err:?}");
    assert_eq!(again.len(), records.len() + 1);
    assert_eq!(
        again.last().map(|r| (r.offset, &r.payload[..])),
        Some((next, payload))
    );
}

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir_in(scratch_root()).unwrap();
    if data.starts_with(segment::MAGIC) {
        std::fs::write(dir.path().join(segment::file_name(0)), data).unwrap();
        run(dir.path(), 0, Some(b"after"));
        return;
    }
    let Ok(plan) = Plan::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    lay_down(dir.path(), &plan);
    run(
        dir.path(),
        plan.min_next_offset as u64,
        plan.append.as_deref(),
    );
});
