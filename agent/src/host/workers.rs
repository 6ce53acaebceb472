//! One netlink worker per network namespace.
//!
//! A worker is a thread that entered its namespace once (`setns` on that
//! thread only, never the daemon's own threads, STYLE.md 15), with a
//! current-thread tokio runtime and one rtnetlink connection opened there.
//! Operations are sent to it as jobs and the caller waits for the result:
//! the daemon calls the host synchronously under its agent lock, so jobs
//! are serialized anyway, and a job costs a channel round trip instead of
//! a thread, a runtime and a socket.
//!
//! The worker of the daemon's own namespace lives as long as the host.
//! A container namespace's worker ends after [`IDLE`] without a job (or at
//! once when told with [`Workers::forget`]): a thread inside a namespace,
//! and its netlink socket, keep that namespace alive, and a namespace its
//! runtime deleted must die (taking its veth pair with it) soon after.

use std::{
    collections::HashMap,
    fs::File,
    future::Future,
    io,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{
        Arc, Mutex,
        mpsc::{self, RecvTimeoutError},
    },
    time::Duration,
};

use rtnetlink::Handle;

use super::{HostError, NetnsId};

/// How long a container namespace's worker waits for a job before ending.
pub const IDLE: Duration = Duration::from_millis(500);

type Job = Box<dyn FnOnce(Handle) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// A worker's job queue. `open` is checked and jobs are sent under its
/// lock, and an idle worker closes it under the same lock after a last
/// look at the queue, so no job is ever left in a queue nobody reads.
struct Worker {
    jobs: mpsc::Sender<Job>,
    open: Arc<Mutex<bool>>,
}

impl Worker {
    /// Starts a worker in the namespace at `netns` (`None`: the daemon's
    /// own, never idle), which must be `id`.
    fn start(netns: Option<(PathBuf, NetnsId)>) -> Result<Self, HostError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let open = Arc::new(Mutex::new(true));
        let (ready_tx, ready) = mpsc::sync_channel(1);
        let worker_open = Arc::clone(&open);
        let idle = netns.is_some().then_some(IDLE);
        std::thread::Builder::new()
            .name("netagent-netlink".into())
            .spawn(move || {
                let handle = match setup(netns.as_ref()) {
                    Ok(parts) => {
                        let _ = ready_tx.send(Ok(()));
                        parts
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let (rt, handle) = handle;
                serve(&rt, &handle, &queue, &worker_open, idle);
            })
            .map_err(|e| HostError::Io {
                op: "starting a netlink worker".into(),
                source: e,
            })?;
        ready
            .recv()
            .map_err(|_| HostError::Other("a netlink worker died while starting".into()))??;
        Ok(Self { jobs, open })
    }

    /// Queues `job`; gives it back if the worker has ended.
    fn submit(&self, job: Job) -> Result<(), Job> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if !*open {
            return Err(job);
        }
        self.jobs.send(job).map_err(|e| e.0)
    }
}

/// Enters the namespace (checking it is `id`), and opens the runtime and
/// the netlink connection.
fn setup(
    netns: Option<&(PathBuf, NetnsId)>,
) -> Result<(tokio::runtime::Runtime, Handle), HostError> {
    let io_err = |op: String| move |source: io::Error| HostError::Io { op, source };
    if let Some((path, id)) = netns {
        use std::os::unix::fs::MetadataExt as _;
        let ns = File::open(path).map_err(io_err(format!(
            "opening network namespace {}",
            path.display()
        )))?;
        let meta = ns
            .metadata()
            .map_err(io_err(format!("reading {}", path.display())))?;
        if (meta.dev(), meta.ino()) != (id.dev, id.ino) {
            return Err(HostError::Netns {
                path: path.clone(),
                reason: "the path names another namespace now".into(),
            });
        }
        // SAFETY: setns on this worker thread only.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io_err(format!(
                "entering network namespace {}",
                path.display()
            ))(io::Error::last_os_error()));
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(io_err("building a netlink runtime".into()))?;
    let handle = rt.block_on(async {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(io_err("opening rtnetlink".into()))?;
        tokio::spawn(connection);
        Ok::<_, HostError>(handle)
    })?;
    Ok((rt, handle))
}

/// Runs jobs until the queue closes or, with `idle`, none comes in time.
fn serve(
    rt: &tokio::runtime::Runtime,
    handle: &Handle,
    queue: &mpsc::Receiver<Job>,
    open: &Mutex<bool>,
    idle: Option<Duration>,
) {
    loop {
        let job = match idle {
            None => queue.recv().ok(),
            Some(idle) => match queue.recv_timeout(idle) {
                Ok(job) => Some(job),
                Err(RecvTimeoutError::Disconnected) => None,
                Err(RecvTimeoutError::Timeout) => {
                    let mut open = open.lock().unwrap_or_else(|p| p.into_inner());
                    match queue.try_recv() {
                        Ok(job) => Some(job),
                        Err(_) => {
                            *open = false;
                            None
                        }
                    }
                }
            },
        };
        let Some(job) = job else { return };
        rt.block_on(job(handle.clone()));
    }
}

/// The workers, by namespace.
#[derive(Default)]
pub struct Workers {
    own: Option<Worker>,
    others: HashMap<NetnsId, Worker>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("namespaces", &self.others.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Workers {
    /// Runs `op` with a netlink handle in the namespace `netns` (whose
    /// identity is `id`), or in the daemon's own namespace (`None`), and
    /// waits for its result.
    pub fn run<T, F, Fut>(&mut self, netns: Option<(&Path, NetnsId)>, op: F) -> Result<T, HostError>
    where
        T: Send + 'static,
        F: FnOnce(Handle) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, HostError>> + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        let mut job: Job = Box::new(move |handle| {
            Box::pin(async move {
                let _ = tx.send(op(handle).await);
            })
        });
        // A worker that just went idle gives the job back: start another.
        for _ in 0..2 {
            let worker = self.worker(netns)?;
            match worker.submit(job) {
                Ok(()) => {
                    return rx
                        .recv()
                        .map_err(|_| HostError::Other("a netlink worker ended mid-job".into()))?;
                }
                Err(back) => {
                    job = back;
                    match netns {
                        Some((_, id)) => {
                            self.others.remove(&id);
                        }
                        None => self.own = None,
                    }
                }
            }
        }
        Err(HostError::Other(
            "no netlink worker could be started".into(),
        ))
    }

    /// Ends the worker of namespace `id`, if any, so it no longer keeps
    /// the namespace alive.
    pub fn forget(&mut self, id: NetnsId) {
        self.others.remove(&id);
    }

    fn worker(&mut self, netns: Option<(&Path, NetnsId)>) -> Result<&Worker, HostError> {
        let slot = match netns {
            None => &mut self.own,
            Some((path, id)) => {
                return match self.others.entry(id) {
                    std::collections::hash_map::Entry::Occupied(e) => Ok(e.into_mut()),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        Ok(e.insert(Worker::start(Some((path.to_owned(), id)))?))
                    }
                };
            }
        };
        if slot.is_none() {
            *slot = Some(Worker::start(None)?);
        }
        Ok(slot.as_ref().expect("just started"))
    }
}
