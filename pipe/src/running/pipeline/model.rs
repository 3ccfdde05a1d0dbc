//! A model test of the pipeline task's state machine (pending range,
//! `unfinished`, rewind) against a fake sink, without the binary.
//!
//! A real stream log takes records while a random schedule arms faults in
//! the fake sink (an error, a panic or a hang past the store timeout in a
//! write, a close or a commit; a commit that lands but whose answer is lost,
//! or that lands and then hangs; a commit refused for good), asks for
//! flushes, and restarts the task: a crash (the task dropped) or a stop (it
//! commits what is durable), each followed by a new task that starts after
//! the fake's last commit, as the supervisor starts one. Then the faults
//! stop and the task must commit every record. Checked throughout:
//!
//! - ranges land in order with no gap or overlap, so every offset is
//!   committed once, and each range holds exactly its records' rows;
//! - no record is written again once its range is committed;
//! - the buffer is released only through committed offsets (checked as
//!   each range lands, and after each step of the schedule);
//! - a flush or a stop that succeeds has committed every record appended;
//! - nothing panics but the injected faults (a `debug_assert!` of the log
//!   caught at a step shows in the task's recent errors);
//! - once the faults stop, everything is committed within [`SETTLE`].
//!
//! The buffer has one record per segment (a release is exact, and a record
//! read after its release is an error) or one segment for all (a record
//! read again is read as it was).
//!
//! The model runs without a quarantine table (`failed: None`): its sink is
//! a `TableSink`, not a [`TaskSink`].

use std::collections::HashMap;
use std::sync::Mutex;

use arrow::array::{Int64Array, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use pipe_ingest::buffer::{Appender, BufferOptions};
use pipe_ingest::log::{LogOptions, StreamLog};
use pipe_ingest::payload::{self, RequestMeta};
use pipe_sink::FileStats;
use proptest::prelude::*;
use tokio::task::JoinHandle;

use super::*;

const STREAM: &str = "events";
const PIPELINE: &str = "p";
/// The task's deadline for a step, a close or a commit attempt.
const STORE_TIMEOUT: Duration = Duration::from_millis(150);
/// How long a flush may wait, and the task may take to commit everything
/// once the faults stop.
const SETTLE: Duration = Duration::from_secs(10);

/// Where a fault strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    Write,
    Close,
    Commit,
}

/// What the fake sink does wrong, once, at the next operation it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// A retryable error: the store is unavailable.
    Fail(At),
    Panic(At),
    /// No answer: the task's store timeout cuts it short.
    Hang(At),
    /// The commit lands, but its answer is lost (an error).
    LostAnswer,
    /// The commit lands, then hangs past the store timeout.
    LandThenHang,
    /// The commit lands, then panics.
    LandThenPanic,
    /// The commit is refused with an error that is not retryable.
    Refused,
}

impl Fault {
    fn at(self) -> At {
        match self {
            Fault::Fail(at) | Fault::Panic(at) | Fault::Hang(at) => at,
            Fault::LostAnswer | Fault::LandThenHang | Fault::LandThenPanic | Fault::Refused => {
                At::Commit
            }
        }
    }
}

/// The fake table: what was committed, the faults armed, and what the task
/// did that a table would not notice or would refuse.
struct FakeTable {
    /// The log the task reads, to check that what lands is still held.
    log: Arc<StreamLog>,
    state: Mutex<TableState>,
}

#[derive(Default)]
struct TableState {
    /// Each commit's range and rows, in order.
    commits: Vec<(OffsetRange, Vec<i64>)>,
    armed: Vec<Fault>,
    violations: Vec<String>,
}

impl FakeTable {
    fn state(&self) -> std::sync::MutexGuard<'_, TableState> {
        // Never poisoned: no fault panics while holding it.
        self.state.lock().unwrap()
    }

    fn last_committed(&self) -> Option<u64> {
        self.state().commits.last().map(|(r, _)| r.last)
    }

    /// The offset after the last one committed.
    fn next(&self) -> u64 {
        self.last_committed().map_or(0, |last| last + 1)
    }

    /// Does what a fault armed for `at` does before the operation; hands
    /// back one that acts after it lands.
    async fn strike(&self, at: At) -> pipe_sink::Result<Option<Fault>> {
        let fault = {
            let mut state = self.state();
            let armed = state.armed.iter().position(|f| f.at() == at);
            armed.map(|i| state.armed.remove(i))
        };
        match fault {
            Some(Fault::Fail(at)) => Err(unavailable(&format!("{at:?} failed"))),
            Some(Fault::Refused) => Err(pipe_sink::Error::Schema("fake: commit refused".into())),
            Some(Fault::Panic(at)) => panic!("injected panic in {at:?}"),
            Some(Fault::Hang(_)) => hang().await,
            after => Ok(after),
        }
    }

    /// Commits `rows` as `range` the way `pipe_sink::commit::commit_range`
    /// does: a retry of the last range finds it, a range the last commit
    /// covers is already committed, an overlap is refused.
    fn land(&self, range: OffsetRange, rows: &[i64]) -> pipe_sink::Result<CommitOutcome> {
        let mut state = self.state();
        let last = state.commits.last().map(|(r, _)| *r);
        match last {
            Some(c) if c == range => return Ok(CommitOutcome::Committed { snapshot_id: None }),
            Some(c) if c.last >= range.first && c.last >= range.last => {
                return Ok(CommitOutcome::AlreadyCommitted)
            }
            Some(c) if c.last >= range.first => {
                state
                    .violations
                    .push(format!("{range:?} overlaps the last commit {c:?}"));
                return Err(pipe_sink::Error::Corrupt("fake: overlapping ranges".into()));
            }
            _ => {}
        }
        let next = last.map_or(0, |c| c.last + 1);
        if range.first != next || range.first > range.last {
            state.violations.push(format!(
                "{range:?} committed after {last:?}: not the next range"
            ));
        }
        let held = self.log.first_offset();
        if held > range.first {
            state.violations.push(format!(
                "{range:?} committed after the buffer released offsets below {held}"
            ));
        }
        state.commits.push((range, rows.to_vec()));
        Ok(CommitOutcome::Committed {
            snapshot_id: Some(state.commits.len() as i64),
        })
    }
}

fn unavailable(what: &str) -> pipe_sink::Error {
    pipe_sink::Error::TimedOut(format!("fake: {what}"))
}

/// Never answers (the caller's timeout drops it).
async fn hang<T>() -> T {
    let never: std::convert::Infallible = std::future::pending().await;
    match never {}
}

/// A sink of one task over the fake table: its open "files" are the rows
/// written since the last close (the `n` column).
struct FakeSink {
    table: Arc<FakeTable>,
    open: Vec<i64>,
}

impl TaskSink for FakeSink {
    type Closed = Vec<i64>;

    async fn write(&mut self, batch: &RecordBatch) -> pipe_sink::Result<()> {
        self.table.strike(At::Write).await?;
        let n = batch.column_by_name("n").expect("the stream's column");
        let n = n.as_any().downcast_ref::<Int64Array>().expect("an Int64");
        // A record is read again only while its range is not committed.
        let next = self.table.next() as i64;
        if let Some(again) = n.values().iter().find(|&&n| n < next) {
            let what = format!("offset {again} written again after it was committed");
            self.table.state().violations.push(what);
        }
        self.open.extend(n.values().iter().copied());
        Ok(())
    }

    async fn close_files(&mut self) -> pipe_sink::Result<Vec<i64>> {
        self.table.strike(At::Close).await?;
        Ok(std::mem::take(&mut self.open))
    }

    fn abort(&mut self) {
        self.open.clear();
    }

    async fn commit(
        &mut self,
        range: OffsetRange,
        _last_crc: Option<u32>,
        closed: &Self::Closed,
    ) -> pipe_sink::Result<CommitOutcome> {
        let after = self.table.strike(At::Commit).await?;
        let outcome = self.table.land(range, closed)?;
        match after {
            Some(Fault::LostAnswer) => Err(unavailable("the commit's answer was lost")),
            Some(Fault::LandThenHang) => hang().await,
            Some(Fault::LandThenPanic) => panic!("injected panic after a commit landed"),
            _ => Ok(outcome),
        }
    }

    fn stats(closed: &Self::Closed) -> FileStats {
        FileStats {
            files: 1,
            bytes: closed.len() as u64 * 8,
            uncompressed_bytes: Some(closed.len() as u64 * 8),
            row_groups: 1,
        }
    }
}

fn stream_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("n", DataType::Int64, false),
        Field::new(
            pipe_schemas::INGEST_TS_COLUMN,
            pipe_schemas::schema::ingest_ts_type(),
            false,
        ),
    ]))
}

/// The rows of the record at `offset`: one to three, each holding the offset.
fn rows_of(offset: u64) -> Vec<i64> {
    vec![offset as i64; 1 + (offset % 3) as usize]
}

fn payload(offset: u64) -> Vec<u8> {
    let n = rows_of(offset);
    let ts =
        TimestampMicrosecondArray::from(vec![0; n.len()]).with_timezone(pipe_schemas::schema::UTC);
    let meta = RequestMeta {
        key: None,
        accepted: n.len() as u32,
        dropped_fields: 0,
        quarantined: 0,
        at_micros: pipe_schemas::now_micros(),
    };
    let batch = RecordBatch::try_new(
        stream_schema(),
        vec![Arc::new(Int64Array::from(n)), Arc::new(ts)],
    )
    .unwrap();
    payload::encode(&meta, Some(&batch), None).unwrap()
}

/// A running task and its handles.
struct Running {
    handle: JoinHandle<Result<()>>,
    flushes: mpsc::Sender<FlushRequest>,
    cancel: CancellationToken,
    stats: Arc<PipelineStats>,
}

/// The log, the fake table and the task of one case.
struct Model {
    log: Arc<StreamLog>,
    appender: Appender,
    table: Arc<FakeTable>,
    roll_rows: Option<u64>,
    appended: u64,
    task: Running,
}

/// Starts a task after the fake table's last commit, as the supervisor
/// does (`Supervisor::start_pipeline`).
async fn start(log: &Arc<StreamLog>, table: &Arc<FakeTable>, roll_rows: Option<u64>) -> Running {
    let committed = table.last_committed();
    let from = log.attach(PIPELINE, committed);
    let plan = PipelinePlan::new(
        PIPELINE,
        &format!("INSERT INTO sink SELECT * FROM {STREAM}"),
        &HashMap::from([(STREAM.to_string(), stream_schema())]),
        &["sink".to_string()],
    )
    .await
    .unwrap();
    let stats = Arc::new(PipelineStats::new(committed, from));
    let task = PipelineTask {
        part: Part::Events,
        plan,
        sink: FakeSink {
            table: table.clone(),
            open: Vec::new(),
        },
        reader: log.reader(from),
        log: log.clone(),
        roll_interval: Duration::from_millis(10),
        roll_bytes: u64::MAX,
        roll_rows,
        committed_through: committed,
        started_at: from,
        store_timeout: STORE_TIMEOUT,
        failed: None,
        unfinished: None,
        stats: stats.clone(),
        backoff: Backoff {
            step: Duration::from_millis(1),
            max: Duration::from_millis(20),
            commit: Duration::from_millis(1),
        },
    };
    let (flushes, rx) = mpsc::channel(1);
    let cancel = CancellationToken::new();
    Running {
        handle: tokio::spawn(task.run(rx, cancel.clone())),
        flushes,
        cancel,
        stats,
    }
}

impl Model {
    async fn append(&mut self, records: u8) -> Result<(), TestCaseError> {
        for _ in 0..records {
            let offset = self.appender.append(payload(self.appended)).await.unwrap();
            prop_assert_eq!(offset, self.appended);
            self.appended += 1;
        }
        Ok(())
    }

    /// Asks for a flush; `Ok(true)` when it succeeded.
    async fn flush(&mut self) -> Result<bool, TestCaseError> {
        let (tx, rx) = oneshot::channel();
        prop_assert!(self.task.flushes.send(tx).await.is_ok(), "the task ended");
        let answer = tokio::time::timeout(SETTLE, rx).await;
        let Ok(answer) = answer else {
            return Err(TestCaseError::fail(format!(
                "a flush got no answer in {SETTLE:?}: {:?}",
                self.task.stats.health()
            )));
        };
        prop_assert!(answer.is_ok(), "the task dropped a flush");
        let Ok(Ok(report)) = answer else {
            return Ok(false);
        };
        prop_assert_eq!(
            (
                report.committed_through.map_or(0, |c| c + 1),
                self.table.next()
            ),
            (self.appended, self.appended),
            "a flush that succeeds commits every record appended before it"
        );
        Ok(true)
    }

    /// Ends the task, by a crash (dropped) or a stop (it commits what is
    /// durable), and starts a new one.
    async fn restart(&mut self, crash: bool) -> Result<(), TestCaseError> {
        self.end(crash).await?;
        self.task = start(&self.log, &self.table, self.roll_rows).await;
        Ok(())
    }

    /// Ends the task, by a crash (dropped) or a stop (it commits what is
    /// durable); `Ok(true)` when a stop succeeded.
    async fn end(&mut self, crash: bool) -> Result<bool, TestCaseError> {
        if crash {
            self.task.handle.abort();
        } else {
            self.task.cancel.cancel();
        }
        let ended = (&mut self.task.handle).await;
        self.check()?;
        let stopped = match ended {
            Ok(Ok(())) => true,
            Ok(Err(_)) => false,
            Err(e) if e.is_cancelled() => false,
            Err(e) => {
                let panic = pipe_schemas::panic_message(e.into_panic().as_ref());
                prop_assert!(panic.contains("injected"), "the task panicked: {}", panic);
                false
            }
        };
        if stopped {
            prop_assert_eq!(
                self.table.next(),
                self.appended,
                "a stop that succeeds commits every record appended"
            );
        }
        Ok(stopped)
    }

    /// What must hold at any time.
    fn check(&self) -> Result<(), TestCaseError> {
        let violations = self.table.state().violations.clone();
        prop_assert!(violations.is_empty(), "{:?}", violations);
        let (held, next) = (self.log.first_offset(), self.table.next());
        prop_assert!(
            held <= next,
            "the buffer released offsets below {} with offsets committed below {}",
            held,
            next
        );
        for e in self.task.stats.recent_errors() {
            let foreign = e.error.contains("panicked") && !e.error.contains("injected");
            prop_assert!(!foreign, "{}", e.error);
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// Appends this many records.
    Append(u8),
    Arm(Fault),
    Flush,
    /// Lets the task run for this many milliseconds.
    Pause(u8),
    /// The task is dropped (a crash), and a new one started.
    Crash,
    /// The task is stopped (it commits what is durable), and a new one started.
    Restart,
}

fn fault() -> impl Strategy<Value = Fault> {
    let at = prop_oneof![Just(At::Write), Just(At::Close), Just(At::Commit)];
    prop_oneof![
        at.clone().prop_map(Fault::Fail),
        at.clone().prop_map(Fault::Panic),
        at.prop_map(Fault::Hang),
        Just(Fault::LostAnswer),
        Just(Fault::LandThenHang),
        Just(Fault::LandThenPanic),
        Just(Fault::Refused),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..=4).prop_map(Op::Append),
        3 => fault().prop_map(Op::Arm),
        2 => Just(Op::Flush),
        2 => (0u8..30).prop_map(Op::Pause),
        1 => Just(Op::Crash),
        1 => Just(Op::Restart),
    ]
}

async fn run_model(
    dir: &std::path::Path,
    ops: Vec<Op>,
    roll_rows: Option<u64>,
    segment_bytes: u64,
) -> Result<(), TestCaseError> {
    let identity = StreamLog::identity(dir, &[]).unwrap();
    identity.keep(dir).unwrap();
    let options = LogOptions {
        buffer: BufferOptions {
            segment_bytes,
            min_free_disk_bytes: Some(0),
            ..BufferOptions::default()
        },
        idempotency_window: Duration::from_secs(3600),
        max_keys: 1000,
        committed_floor: 0,
        legacy_positions: Default::default(),
    };
    let opened = StreamLog::open(
        STREAM,
        dir,
        identity,
        options,
        [(PIPELINE.to_string(), None)],
    )
    .unwrap();
    let table = Arc::new(FakeTable {
        log: opened.log.clone(),
        state: Default::default(),
    });
    let mut model = Model {
        task: start(&opened.log, &table, roll_rows).await,
        log: opened.log,
        appender: opened.appender,
        table,
        roll_rows,
        appended: 0,
    };
    for op in ops {
        match op {
            Op::Append(records) => model.append(records).await?,
            Op::Arm(fault) => model.table.state().armed.push(fault),
            Op::Flush => {
                model.flush().await?;
            }
            Op::Pause(ms) => tokio::time::sleep(Duration::from_millis(ms.into())).await,
            Op::Crash => model.restart(true).await?,
            Op::Restart => model.restart(false).await?,
        }
        model.check()?;
    }

    // The faults stop: everything is committed, soon.
    model.table.state().armed.clear();
    let settled = tokio::time::Instant::now() + SETTLE;
    while !model.flush().await? {
        prop_assert!(
            tokio::time::Instant::now() < settled,
            "stalled at offset {} of {}: {:?}",
            model.table.next(),
            model.appended,
            model.task.stats.health()
        );
    }
    prop_assert!(model.end(false).await?, "the last stop failed");
    prop_assert_eq!(
        model.task.stats.committed_through(),
        model.table.last_committed()
    );

    // Every offset once, in order, each range with its records' rows.
    let commits = model.table.state().commits.clone();
    let mut next = 0;
    for (range, rows) in commits {
        prop_assert_eq!(range.first, next, "{:?} after offset {}", range, next);
        let mut rows = rows;
        rows.sort_unstable();
        let expected: Vec<i64> = (range.first..=range.last).flat_map(rows_of).collect();
        prop_assert_eq!(rows, expected, "the rows of {:?}", range);
        next = range.last + 1;
    }
    prop_assert_eq!(next, model.appended);
    drop(model.appender);
    opened.writer.await.unwrap().unwrap();
    Ok(())
}

/// The task reads the buffer in `block_in_place`: a multi-thread runtime.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// See the module doc.
    #[test]
    fn the_task_commits_every_record_once_through_faults_and_restarts(
        ops in prop::collection::vec(op(), 1..40),
        roll_rows in prop::option::of(1u64..8),
        // One record per segment (a release is exact), or a few thousand.
        segment_bytes in prop_oneof![Just(1u64), Just(1u64 << 20)],
    ) {
        let dir = tempfile::tempdir().unwrap();
        runtime().block_on(run_model(dir.path(), ops, roll_rows, segment_bytes))?;
    }
}

/// Found by the model: a panic in a commit rewound the reader to the last
/// commit, before the closed range waiting in `unfinished`. Once that range
/// landed, it was read and written again, and committed again (with its
/// files left unreferenced) or, with newer records, refused for good as an
/// overlap: the pipeline stalled.
#[test]
fn a_panic_in_a_commit_reads_on_after_the_closed_range() {
    let schedules = [
        vec![Op::Append(1), Op::Arm(Fault::LandThenPanic), Op::Flush],
        vec![
            Op::Append(3),
            Op::Arm(Fault::Panic(At::Commit)),
            Op::Flush,
            Op::Append(2),
            Op::Flush,
        ],
    ];
    for ops in schedules {
        let dir = tempfile::tempdir().unwrap();
        // Records stay readable after their release (one segment).
        let segment_bytes = 1 << 20;
        runtime()
            .block_on(run_model(dir.path(), ops, None, segment_bytes))
            .unwrap();
    }
}
