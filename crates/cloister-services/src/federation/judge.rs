//! Judges tokens with a provider's attribute mapping and condition where a tenant's CEL cannot
//! hurt the server. CEL has no cost limit: a comprehension inside another over a token's long
//! list, or `replace` on a long claim, costs minutes or gigabytes, and it ran on the server's
//! own threads, which every tenant's API and every instance's metadata server share. So each
//! judgement runs in a worker process (`cloister condition-worker`, or the services' own
//! `cloister-condition-worker` in tests): its memory is bounded (`WORKER_MEMORY_BYTES`, set by
//! the worker on itself), each question has a deadline (`DEADLINE`) and each answer a size
//! (`MAX_ANSWER_BYTES`); a worker past one is killed and the token refused. At most one
//! question per core is judged at once, on as many idle workers, kept between questions.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use cloister_condition::{Judgement, Question};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::Semaphore;

/// How long one token's mapping and condition may take together.
pub const DEADLINE: Duration = Duration::from_secs(2);
/// A worker's data (heap and private mappings, `RLIMIT_DATA`).
pub const WORKER_MEMORY_BYTES: u64 = 512 << 20;
/// How much lower than the server a worker runs (`nice`).
const WORKER_NICENESS: libc::c_int = 10;
/// The longest answer read back (clauses, compared values and mapped attributes).
pub const MAX_ANSWER_BYTES: u64 = 1 << 20;
/// How long a new worker may take to start (a bound against a hung one, not a limit on a
/// loaded machine).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a token may wait for a free worker before it is refused as busy: one tenant's
/// stream of costly tokens delays the others' by at most this.
pub const QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// How to start a worker: a program that runs [`worker_main`].
#[derive(Debug, Clone)]
pub struct WorkerCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

/// Which of a judgement's limits a token passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Time,
    /// The worker ended before answering: allocation past its memory is how it ends.
    Memory,
    Answer,
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Time => write!(f, "its time ({} s)", DEADLINE.as_secs()),
            Limit::Memory => write!(f, "its memory ({} MiB)", WORKER_MEMORY_BYTES >> 20),
            Limit::Answer => write!(f, "its answer's size ({} KiB)", MAX_ANSWER_BYTES >> 10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// The token's judgement passed a limit; the worker was killed. The text is the caller's
    /// (the provider's owner's) to act on.
    #[error(
        "judging this token with the provider's attribute mapping and condition passed the \
         limits on one token ({secs} s, {mib} MiB, an answer of {kib} KiB): it passed {0}. \
         Simplify the expressions: a comprehension inside another over a token's list, or a \
         claim's text multiplied, costs in proportion to the token",
        secs = DEADLINE.as_secs(),
        mib = WORKER_MEMORY_BYTES >> 20,
        kib = MAX_ANSWER_BYTES >> 10
    )]
    OverLimits(Limit),
    /// Every worker stayed busy for `QUEUE_TIMEOUT`: tokens came faster than they are judged.
    #[error(
        "every condition worker is busy (tokens are judged one per core at once); try again \
         shortly"
    )]
    Busy,
    /// A saved expression no longer compiles (this build's CEL differs from the one that
    /// saved it), or the playground's edited one does not.
    #[error("{0}")]
    Expression(String),
    /// The worker could not be started or reached: the server's fault.
    #[error("the condition worker failed: {what}")]
    Worker {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl JudgeError {
    /// The cause under a worker's failure, for the log (a 500's message stays generic).
    pub fn chain_tail(&self) -> String {
        std::error::Error::source(self).map_or_else(String::new, ToString::to_string)
    }

    fn worker(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| JudgeError::Worker { what, source }
    }
}

struct Worker {
    // Killed when dropped: a worker that passed a limit or lost its question goes with it.
    _child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

pub struct Judge {
    worker: WorkerCommand,
    idle: Mutex<Vec<Worker>>,
    permits: Semaphore,
}

impl Judge {
    pub fn new(worker: WorkerCommand) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            worker,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(cores),
        }
    }

    pub async fn judge(&self, question: &Question) -> Result<Judgement, JudgeError> {
        let _permit = match tokio::time::timeout(QUEUE_TIMEOUT, self.permits.acquire()).await {
            Ok(Ok(permit)) => permit,
            // The semaphore is never closed; waiting past the bound is being busy.
            Ok(Err(_)) | Err(_) => return Err(JudgeError::Busy),
        };
        let mut line = serde_json::to_vec(question)
            .map_err(|e| JudgeError::worker("the question")(std::io::Error::other(e)))?;
        line.push(b'\n');
        let idle = self.idle.lock().map(|mut idle| idle.pop()).unwrap_or(None);
        let (mut worker, reused) = match idle {
            Some(worker) => (worker, true),
            None => (self.spawn().await?, false),
        };
        // A worker past a limit is dropped here, and killed with it.
        let mut answer = tokio::time::timeout(DEADLINE, ask(&mut worker, &line)).await;
        if reused && matches!(answer, Ok(Err(_))) {
            // An idle worker that died meanwhile (the OOM killer): a fresh one, once.
            worker = self.spawn().await?;
            answer = tokio::time::timeout(DEADLINE, ask(&mut worker, &line)).await;
        }
        let answer = match answer {
            Ok(Ok(Ok(answer))) => answer,
            Ok(Ok(Err(limit))) => return Err(JudgeError::OverLimits(limit)),
            Ok(Err(e)) => return Err(JudgeError::worker("asking it")(e)),
            Err(_) => return Err(JudgeError::OverLimits(Limit::Time)),
        };
        // An answer serde cannot read (nested past its depth) is one past its bound.
        let answer: Result<Judgement, String> =
            serde_json::from_slice(&answer).map_err(|_| JudgeError::OverLimits(Limit::Answer))?;
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(worker);
        }
        answer.map_err(JudgeError::Expression)
    }

    async fn spawn(&self) -> Result<Worker, JudgeError> {
        let program = self.worker.program.display().to_string();
        spawn(&self.worker)
            .await
            .map_err(JudgeError::worker(format!("starting {program}")))
    }
}

/// Starts a worker and waits for its [`READY`](cloister_condition::judgement::READY). It gets
/// no environment (the server's may hold a database password) and its stderr is the
/// server's (an allocation that failed says so there).
async fn spawn(command: &WorkerCommand) -> std::io::Result<Worker> {
    let mut child = tokio::process::Command::new(&command.program)
        .args(&command.args)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(std::io::Error::other("no pipes to the worker"));
    };
    let mut worker = Worker {
        _child: child,
        stdin,
        stdout: BufReader::new(stdout),
    };
    let mut ready = Vec::new();
    tokio::time::timeout(
        START_TIMEOUT,
        (&mut worker.stdout).take(64).read_until(b'\n', &mut ready),
    )
    .await
    .map_err(|_| std::io::Error::other("it did not start"))??;
    if ready.strip_suffix(b"\n") != Some(cloister_condition::judgement::READY.as_bytes()) {
        return Err(std::io::Error::other(format!(
            "it began with {:?}",
            String::from_utf8_lossy(&ready)
        )));
    }
    Ok(worker)
}

/// One question, one answer line (without its newline), or the limit the question passed.
/// Fails only when the question cannot be written (a worker that died idle).
async fn ask(worker: &mut Worker, question: &[u8]) -> std::io::Result<Result<Vec<u8>, Limit>> {
    worker.stdin.write_all(question).await?;
    worker.stdin.flush().await?;
    let mut answer = Vec::new();
    // A read that fails is a worker that ended, as one that ends before a whole answer.
    let _ = (&mut worker.stdout)
        .take(MAX_ANSWER_BYTES)
        .read_until(b'\n', &mut answer)
        .await;
    Ok(match answer.strip_suffix(b"\n") {
        Some(line) => Ok(line.to_vec()),
        None if answer.len() as u64 >= MAX_ANSWER_BYTES => Err(Limit::Answer),
        None => Err(Limit::Memory),
    })
}

/// A worker process: bounds its own memory, then answers questions on stdin until it ends.
pub fn worker_main() -> std::process::ExitCode {
    use nix::sys::resource::{Resource, setrlimit};
    // Ends with the server that started it, mid-comprehension or not.
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
        eprintln!("ERROR: the condition worker could not tie itself to the server: {e}");
        return std::process::ExitCode::FAILURE;
    }
    // A tenant's CEL yields the cores to the server's own threads, and is the first thing the
    // kernel's OOM killer takes; both best effort (a container may refuse them).
    // SAFETY: setpriority takes plain integers and touches no memory of ours.
    let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, WORKER_NICENESS) };
    let _ = std::fs::write("/proc/self/oom_score_adj", "1000");
    if let Err(e) = setrlimit(
        Resource::RLIMIT_DATA,
        WORKER_MEMORY_BYTES,
        WORKER_MEMORY_BYTES,
    ) {
        eprintln!("ERROR: the condition worker could not bound its memory: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let stdin = std::io::stdin().lock();
    let stdout = std::io::stdout().lock();
    match cloister_condition::judgement::serve(stdin, stdout) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ERROR: the condition worker: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
