//! Sockets made inside a container's network namespace for a daemon
//! thread that lives in its own: the embedded resolver asks a container's
//! upstream servers from the container's namespace (as Docker does), so
//! its isolation, internal networks and masquerade apply to what the
//! resolver sends on its behalf.
//!
//! A socket belongs to the namespace it was created in, whatever thread
//! uses it later. One maker thread does the creating: it enters the
//! container's namespace (`setns` on that thread only, STYLE.md 15), makes
//! the socket and goes back home before the next job. Between jobs it is
//! always home, so it never keeps a container's namespace alive; should
//! it fail to get back, it ends (its namespace reference goes with it)
//! and the next job starts another.

use std::{
    fs::File,
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{Arc, Mutex, mpsc},
};

use tokio::sync::oneshot;

struct Job {
    netns: Arc<OwnedFd>,
    domain: libc::c_int,
    kind: libc::c_int,
    reply: oneshot::Sender<io::Result<OwnedFd>>,
}

/// The handle on the maker thread; cheap to clone.
#[derive(Clone)]
pub struct NamespaceSockets {
    home: Arc<OwnedFd>,
    jobs: Arc<Mutex<mpsc::Sender<Job>>>,
}

impl std::fmt::Debug for NamespaceSockets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamespaceSockets").finish_non_exhaustive()
    }
}

impl NamespaceSockets {
    /// A maker whose home is the calling thread's network namespace.
    pub fn new() -> io::Result<Self> {
        let home = Arc::new(own_netns()?);
        let jobs = Arc::new(Mutex::new(spawn(Arc::clone(&home))?));
        Ok(Self { home, jobs })
    }

    /// Whether `netns` is the maker's home namespace (where a socket needs
    /// no maker).
    pub fn is_home(&self, netns: &OwnedFd) -> bool {
        same_namespace(&self.home, netns)
    }

    /// A non-blocking, close-on-exec socket of `domain` and `kind`
    /// (`SOCK_DGRAM`, `SOCK_STREAM`) made in `netns`.
    pub async fn socket(
        &self,
        netns: &Arc<OwnedFd>,
        domain: libc::c_int,
        kind: libc::c_int,
    ) -> io::Result<OwnedFd> {
        let (reply, answer) = oneshot::channel();
        let mut job = Job {
            netns: Arc::clone(netns),
            domain,
            kind,
            reply,
        };
        {
            let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(mpsc::SendError(back)) = jobs.send(job) {
                // The thread ended (it could not get home): a new one.
                *jobs = spawn(Arc::clone(&self.home))?;
                job = back;
                jobs.send(job)
                    .map_err(|_| io::Error::other("the namespace socket thread ended"))?;
            }
        }
        answer
            .await
            .map_err(|_| io::Error::other("the namespace socket thread ended"))?
    }
}

fn spawn(home: Arc<OwnedFd>) -> io::Result<mpsc::Sender<Job>> {
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("netagent-nssock".into())
        .spawn(move || {
            for job in rx {
                let (socket, at_home) = make(&home, &job);
                let _ = job.reply.send(socket);
                if !at_home {
                    tracing::error!(
                        "the namespace socket thread could not return to the daemon's namespace; it ends"
                    );
                    return;
                }
            }
        })?;
    Ok(tx)
}

/// Makes `job`'s socket in its namespace; whether the thread is home
/// again afterwards.
fn make(home: &OwnedFd, job: &Job) -> (io::Result<OwnedFd>, bool) {
    // SAFETY: a namespace descriptor we hold; only this thread moves.
    if unsafe { libc::setns(job.netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        // Still home: a failed setns changes nothing.
        return (Err(io::Error::last_os_error()), true);
    }
    // SAFETY: plain socket(2); the descriptor is owned at once.
    let fd = unsafe {
        libc::socket(
            job.domain,
            job.kind | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    let socket = if fd < 0 {
        Err(io::Error::last_os_error())
    } else {
        // SAFETY: a fresh descriptor nobody else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    };
    // SAFETY: as above, back to the daemon's namespace.
    let at_home = unsafe { libc::setns(home.as_raw_fd(), libc::CLONE_NEWNET) } == 0;
    (socket, at_home)
}

/// The calling thread's network namespace.
pub fn own_netns() -> io::Result<OwnedFd> {
    Ok(File::open("/proc/thread-self/ns/net")?.into())
}

/// Whether two namespace descriptors name one namespace (nsfs device and
/// inode).
fn same_namespace(a: &OwnedFd, b: &OwnedFd) -> bool {
    let stat = |fd: &OwnedFd| {
        // SAFETY: fstat into a zeroed struct we own.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        (unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } == 0).then_some((st.st_dev, st.st_ino))
    };
    matches!((stat(a), stat(b)), (Some(x), Some(y)) if x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket made for the home namespace (the only one a unit test may
    /// enter) works, and the thread serves job after job.
    #[tokio::test(flavor = "current_thread")]
    async fn the_maker_serves_one_job_after_another() {
        let sockets = NamespaceSockets::new().expect("the maker");
        let home = Arc::new(own_netns().expect("own namespace"));
        assert!(sockets.is_home(&home));
        for _ in 0..3 {
            // Without CAP_SYS_ADMIN setns is refused: a failure, not a skip.
            let fd = sockets
                .socket(&home, libc::AF_INET, libc::SOCK_DGRAM)
                .await
                .unwrap_or_else(|e| {
                    panic!("a socket in the home namespace (setns needs root): {e}")
                });
            let udp = std::net::UdpSocket::from(fd);
            // Connecting binds it (a port of its own).
            udp.connect("127.0.0.1:9").expect("connect");
            assert!(udp.local_addr().expect("bound").port() != 0);
        }
        let other = std::fs::File::open("/proc/self/ns/user").expect("a user namespace");
        assert!(!sockets.is_home(&other.into()), "not a network namespace's");
    }
}
