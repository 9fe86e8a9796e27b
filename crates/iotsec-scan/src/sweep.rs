//! The TCP connect sweep: a lean nonblocking-connect + epoll loop.
//!
//! On loopback the kernel completes or refuses a connection inside `connect()` itself (the SYN
//! and the RST are processed before the call returns), so the cost per port is kernel work, not
//! waiting; a task per port would spend more on scheduling than on scanning. The loop therefore:
//! - calls `connect()` and, on `EINPROGRESS`, reads `SO_ERROR` at once: on loopback the answer
//!   is usually already there, and only sockets still pending are registered with epoll;
//! - reuses a socket whose connection was refused for the next port (Linux lets a TCP socket in
//!   the CLOSE state connect again), saving a `socket()` + `close()` pair per closed port;
//! - on loopback, uses blocking sockets with a 1 ms send timeout, so one `connect()` returns the
//!   answer (no `SO_ERROR` read), bound to one fixed source port (no ephemeral-port search per
//!   connect); a connect that takes longer than the 1 ms switches the loop to the nonblocking
//!   mode above;
//! - splits a large loopback sweep across two threads (see [`SweepConfig::threads`]);
//! - keeps at most `window` sockets in flight, and sleeps in `epoll_wait` only when the window is
//!   full or the queue is empty, until the next completion or deadline.
//!
//! Robustness rules:
//! - **EMFILE / ENFILE / EADDRNOTAVAIL** (descriptor or ephemeral-port exhaustion): the port goes
//!   back to the front of the queue, the window shrinks to what is in flight, and when nothing
//!   is in flight the loop backs off and retries. Only after [`MAX_STARVED`] fruitless rounds does
//!   it fail with [`ScanError::NoSockets`]: a port is never dropped silently.
//! - **Self-connect**: a socket whose ephemeral local port equals the target port on the target
//!   address connects to itself (TCP simultaneous open) and looks open. Detected by comparing
//!   the local and peer addresses; the port is retried with a fresh socket.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrLike, SockaddrStorage, connect, getpeername,
    getsockname, getsockopt, setsockopt, socket, sockopt,
};
use nix::sys::time::TimeVal;
use serde::{Deserialize, Serialize};

use crate::error::ScanError;

/// Rounds of back-off with nothing in flight before giving up on a port.
pub const MAX_STARVED: u32 = 200;
/// Back-off between those rounds.
const BACKOFF: Duration = Duration::from_millis(10);
/// How long an inline (blocking) connect may wait before it is handed to epoll.
const INLINE_WAIT_US: i64 = 1000;
/// Attempts for a port whose socket connected to itself.
const SELF_CONNECT_RETRIES: u8 = 8;

/// Sweep settings.
#[derive(Debug, Clone, Copy)]
pub struct SweepConfig {
    /// Sockets in flight at most (shared by all threads).
    pub window: usize,
    /// Time after which an unanswered connect counts as filtered.
    pub timeout: Duration,
    /// Threads for a loopback sweep of at least [`SHARD_MIN_PORTS`] ports (each its own loop
    /// over a contiguous share of the ports). On loopback the sweep is CPU-bound kernel work,
    /// so a second core halves it; elsewhere it waits on the network and one thread suffices.
    pub threads: usize,
}

/// Smallest loopback sweep that is split across threads.
pub const SHARD_MIN_PORTS: usize = 4096;

impl SweepConfig {
    /// `window` sockets in flight, `timeout`, and one thread per core (at most 2).
    pub fn new(window: usize, timeout: Duration) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            window,
            timeout,
            threads: cores.min(2),
        }
    }
}

/// What the sweep saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SweepOutcome {
    /// Open ports, ascending.
    pub open: Vec<u16>,
    /// Ports that refused (RST).
    pub closed: usize,
    /// Ports that timed out or were unreachable, ascending.
    pub filtered: Vec<u16>,
    /// Counters.
    pub stats: SweepStats,
}

/// Counters that show how the loop behaved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepStats {
    /// Window at the start.
    pub window: usize,
    /// Window at the end (smaller after resource back-off).
    pub final_window: usize,
    /// Most sockets registered with epoll at once.
    pub max_in_flight: usize,
    /// Connects answered before `connect()` returned or right after (no epoll round trip).
    pub settled_inline: usize,
    /// Times socket creation hit a resource limit and the port was requeued.
    pub resource_backoffs: usize,
    /// Self-connects detected and retried.
    pub self_connects: usize,
}

/// Progress callback payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepProgress {
    /// Ports finished.
    pub done: usize,
    /// Ports in the sweep.
    pub total: usize,
    /// Open so far.
    pub open: usize,
    /// Resource back-offs so far (reported as each one happens).
    pub resource_backoffs: usize,
}

struct Slot {
    fd: OwnedFd,
    port: u16,
    attempt: u8,
    generation: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Refused,
    Resource,
    Unreachable,
    Fatal,
}

fn classify(errno: Errno) -> Class {
    match errno {
        Errno::ECONNREFUSED => Class::Refused,
        Errno::EMFILE
        | Errno::ENFILE
        | Errno::ENOBUFS
        | Errno::ENOMEM
        | Errno::EADDRNOTAVAIL
        | Errno::EAGAIN
        | Errno::ENOSPC => Class::Resource,
        Errno::ENETUNREACH
        | Errno::EHOSTUNREACH
        | Errno::EHOSTDOWN
        | Errno::ETIMEDOUT
        | Errno::ECONNRESET
        | Errno::EACCES
        | Errno::EPERM => Class::Unreachable,
        _ => Class::Fatal,
    }
}

/// Where a connect stands.
enum Settled {
    Pending,
    Open,
    Closed,
    Filtered,
    SelfConnect,
    Resource(Errno),
    Fatal(Errno),
}

/// Reads `SO_ERROR` and, when there is none, whether the socket is connected.
fn settle(fd: &OwnedFd, target: &SocketAddr) -> Settled {
    match getsockopt(fd, sockopt::SocketError) {
        Ok(0) => {}
        Ok(code) => return settled_by(Errno::from_raw(code)),
        Err(e) => return Settled::Fatal(e),
    }
    match getpeername::<SockaddrStorage>(fd.as_raw_fd()) {
        Ok(_) => {
            let local = getsockname::<SockaddrStorage>(fd.as_raw_fd())
                .ok()
                .and_then(|s| to_socket_addr(&s));
            if local.as_ref() == Some(target) {
                Settled::SelfConnect
            } else {
                Settled::Open
            }
        }
        Err(Errno::ENOTCONN) => Settled::Pending,
        Err(e) => settled_by(e),
    }
}

fn settled_by(errno: Errno) -> Settled {
    match classify(errno) {
        Class::Refused => Settled::Closed,
        Class::Unreachable => Settled::Filtered,
        Class::Resource => Settled::Resource(errno),
        Class::Fatal => Settled::Fatal(errno),
    }
}

fn to_socket_addr(s: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        Some(SocketAddr::from((v4.ip(), v4.port())))
    } else {
        s.as_sockaddr_in6()
            .map(|v6| SocketAddr::from((v6.ip(), v6.port())))
    }
}

/// A socket for the next connect. Inline (loopback) sockets are blocking with a short send
/// timeout and, when `bind_to` is given, bound to the sweep's fixed source port.
fn new_socket(
    family: AddressFamily,
    inline: bool,
    bind_to: Option<&SockaddrStorage>,
) -> nix::Result<OwnedFd> {
    if inline {
        let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
        setsockopt(&fd, sockopt::SendTimeout, &TimeVal::new(0, INLINE_WAIT_US))?;
        if let Some(src) = bind_to {
            // SO_REUSEADDR: earlier sockets bound to the same port (now closed or in
            // TIME_WAIT after an open port) must not block the bind. If the bind fails
            // anyway, connect() picks an ephemeral port as usual.
            setsockopt(&fd, sockopt::ReuseAddr, &true)?;
            let _ = nix::sys::socket::bind(fd.as_raw_fd(), src);
        }
        Ok(fd)
    } else {
        socket(
            family,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
    }
}

/// A source address on `ip` with a port the kernel considers free right now.
fn pick_source_port(ip: IpAddr, family: AddressFamily) -> Option<SockaddrStorage> {
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).ok()?;
    nix::sys::socket::bind(
        fd.as_raw_fd(),
        &SockaddrStorage::from(SocketAddr::new(ip, 0)),
    )
    .ok()?;
    getsockname::<SockaddrStorage>(fd.as_raw_fd()).ok()
}

fn set_nonblocking(fd: &OwnedFd) -> nix::Result<()> {
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map(drop)
}

fn fatal(context: &'static str, errno: Errno) -> ScanError {
    ScanError::Io {
        context,
        source: io::Error::from(errno),
    }
}

/// Sweeps `ports` of `ip`. `on_open` is called as soon as a port is found open (so probing can
/// start while the sweep goes on); `on_progress` every 1024 finished ports, on every resource
/// back-off, and at the end.
pub fn sweep(
    ip: IpAddr,
    ports: &[u16],
    config: SweepConfig,
    mut on_open: impl FnMut(u16) + Send,
    mut on_progress: impl FnMut(SweepProgress) + Send,
) -> Result<SweepOutcome, ScanError> {
    let shards = if ip.is_loopback() && ports.len() >= SHARD_MIN_PORTS {
        config.threads.clamp(1, 8)
    } else {
        1
    };
    if shards == 1 {
        return sweep_shard(ip, ports, config, &mut on_open, &mut on_progress);
    }
    let total = ports.len();
    let shard_config = SweepConfig {
        window: (config.window / shards).max(1),
        ..config
    };
    let open = Mutex::new(on_open);
    // Per-shard (done, open, backoffs), summed for the caller.
    let progress = Mutex::new((on_progress, vec![(0usize, 0usize, 0usize); shards]));
    let chunk = total.div_ceil(shards);
    let results: Vec<Result<SweepOutcome, ScanError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = ports
            .chunks(chunk)
            .enumerate()
            .map(|(i, part)| {
                let (open, progress) = (&open, &progress);
                scope.spawn(move || {
                    sweep_shard(
                        ip,
                        part,
                        shard_config,
                        &mut |port| (open.lock().unwrap_or_else(PoisonError::into_inner))(port),
                        &mut |p| {
                            let mut guard = progress.lock().unwrap_or_else(PoisonError::into_inner);
                            let (callback, shares) = &mut *guard;
                            shares[i] = (p.done, p.open, p.resource_backoffs);
                            let sum = shares
                                .iter()
                                .fold((0, 0, 0), |a, s| (a.0 + s.0, a.1 + s.1, a.2 + s.2));
                            callback(SweepProgress {
                                done: sum.0,
                                total,
                                open: sum.1,
                                resource_backoffs: sum.2,
                            });
                        },
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(ScanError::Io {
                        context: "sweep thread panicked",
                        source: io::Error::other("sweep thread panicked"),
                    })
                })
            })
            .collect()
    });
    let mut merged = SweepOutcome {
        stats: SweepStats {
            window: config.window,
            final_window: 0,
            ..SweepStats::default()
        },
        ..SweepOutcome::default()
    };
    for r in results {
        let r = r?;
        merged.open.extend(r.open);
        merged.closed += r.closed;
        merged.filtered.extend(r.filtered);
        merged.stats.final_window += r.stats.final_window;
        merged.stats.max_in_flight += r.stats.max_in_flight;
        merged.stats.settled_inline += r.stats.settled_inline;
        merged.stats.resource_backoffs += r.stats.resource_backoffs;
        merged.stats.self_connects += r.stats.self_connects;
    }
    merged.open.sort_unstable();
    merged.filtered.sort_unstable();
    Ok(merged)
}

/// One sweep loop over `ports` on the calling thread.
fn sweep_shard(
    ip: IpAddr,
    ports: &[u16],
    config: SweepConfig,
    on_open: &mut dyn FnMut(u16),
    on_progress: &mut dyn FnMut(SweepProgress),
) -> Result<SweepOutcome, ScanError> {
    let family = match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
        .map_err(|e| fatal("cannot create the epoll instance", e))?;
    let mut events = vec![EpollEvent::empty(); 1024];
    let window_max = config.window.max(1);
    let mut window = window_max;
    let mut slots: Vec<Option<Slot>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut deadlines: VecDeque<(usize, u64, Instant)> = VecDeque::new();
    let mut queue: VecDeque<(u16, u8)> = ports.iter().map(|&p| (p, 0)).collect();
    let mut out = SweepOutcome {
        stats: SweepStats {
            window: window_max,
            ..SweepStats::default()
        },
        ..SweepOutcome::default()
    };
    let total = ports.len();
    let mut done = 0usize;
    let mut next_report = 1024usize;
    let mut in_flight = 0usize;
    let mut generation = 0u64;
    let mut starved_rounds = 0u32;
    let mut backoff_until: Option<Instant> = None;
    let mut reported_backoffs = 0usize;
    // A socket whose last connect was refused: Linux lets it connect again.
    let mut spare: Option<OwnedFd> = None;
    let mut inline = ip.is_loopback();
    // Loopback: one fixed source port for the whole shard. An explicitly bound port stays with
    // the socket across refused connects, so the kernel neither searches the ephemeral range
    // (`__inet_hash_connect`) nor releases the port for every closed port (about 15% less
    // kernel time per port here). The target port equal to it self-connects and is retried
    // unbound, like any self-connect.
    let source = if inline {
        pick_source_port(ip, family)
    } else {
        None
    };

    loop {
        let now = Instant::now();
        if backoff_until.is_none_or(|t| now >= t) {
            backoff_until = None;
            while in_flight < window {
                let Some((port, attempt)) = queue.pop_front() else {
                    break;
                };
                let target = SocketAddr::new(ip, port);
                let reused = spare.is_some();
                let bind_to = if inline && attempt == 0 {
                    source.as_ref()
                } else {
                    None
                };
                let fd = match spare
                    .take()
                    .map_or_else(|| new_socket(family, inline, bind_to), Ok)
                {
                    Ok(fd) => fd,
                    Err(errno) if classify(errno) == Class::Resource => {
                        out.stats.resource_backoffs += 1;
                        queue.push_front((port, attempt));
                        window = in_flight.max(1);
                        if in_flight == 0 {
                            starved_rounds += 1;
                            if starved_rounds > MAX_STARVED {
                                return Err(ScanError::NoSockets {
                                    port,
                                    source: io::Error::from(errno),
                                });
                            }
                            backoff_until = Some(now + BACKOFF);
                        }
                        break;
                    }
                    Err(errno) => return Err(fatal("cannot create a socket", errno)),
                };
                let addr = SockaddrStorage::from(target);
                let mut result = connect(fd.as_raw_fd(), &addr as &dyn SockaddrLike);
                if reused && result == Err(Errno::ECONNABORTED) {
                    // The reused socket still said "connecting" (its refusal arrived after
                    // connect() returned); this call reset it to unconnected. Connect for real.
                    result = connect(fd.as_raw_fd(), &addr as &dyn SockaddrLike);
                }
                if bind_to.is_some() && result == Err(Errno::EADDRNOTAVAIL) {
                    // The fixed source port cannot reach this target (its 4-tuple is still in
                    // TIME_WAIT from an earlier scan): retry the port with an ephemeral one.
                    queue.push_front((port, attempt + 1));
                    continue;
                }
                let settled = match result {
                    Ok(()) => settle(&fd, &target),
                    Err(Errno::EINPROGRESS) => {
                        if inline {
                            // The inline wait expired: this target answers slowly. Hand the
                            // socket to epoll and stop waiting inline from now on.
                            inline = false;
                            if let Err(errno) = set_nonblocking(&fd) {
                                return Err(fatal("cannot make a socket nonblocking", errno));
                            }
                        }
                        settle(&fd, &target)
                    }
                    Err(errno) => settled_by(errno),
                };
                match settled {
                    Settled::Pending => {
                        let idx = free.pop().unwrap_or_else(|| {
                            slots.push(None);
                            slots.len() - 1
                        });
                        let event = EpollEvent::new(EpollFlags::EPOLLOUT, idx as u64);
                        if let Err(errno) = epoll.add(&fd, event) {
                            free.push(idx);
                            if classify(errno) == Class::Resource {
                                out.stats.resource_backoffs += 1;
                                queue.push_front((port, attempt));
                                window = in_flight.max(1);
                                backoff_until = Some(now + BACKOFF);
                                break;
                            }
                            return Err(fatal("cannot register a socket with epoll", errno));
                        }
                        generation += 1;
                        slots[idx] = Some(Slot {
                            fd,
                            port,
                            attempt,
                            generation,
                        });
                        deadlines.push_back((idx, generation, now + config.timeout));
                        in_flight += 1;
                        out.stats.max_in_flight = out.stats.max_in_flight.max(in_flight);
                        starved_rounds = 0;
                    }
                    Settled::Resource(errno) => {
                        // Ephemeral ports exhausted: wait for some to be released.
                        out.stats.resource_backoffs += 1;
                        queue.push_front((port, attempt));
                        window = in_flight.max(1);
                        if in_flight == 0 {
                            starved_rounds += 1;
                            if starved_rounds > MAX_STARVED {
                                return Err(ScanError::NoSockets {
                                    port,
                                    source: io::Error::from(errno),
                                });
                            }
                        }
                        backoff_until = Some(now + BACKOFF);
                        break;
                    }
                    Settled::Fatal(errno) => return Err(fatal("connect failed", errno)),
                    other => {
                        out.stats.settled_inline += 1;
                        starved_rounds = 0;
                        let reuse = matches!(other, Settled::Closed);
                        finish(
                            other, port, attempt, &mut out, &mut queue, &mut done, on_open,
                        );
                        if reuse {
                            spare = Some(fd);
                        }
                    }
                }
            }
        }
        if out.stats.resource_backoffs > reported_backoffs {
            reported_backoffs = out.stats.resource_backoffs;
            on_progress(SweepProgress {
                done,
                total,
                open: out.open.len(),
                resource_backoffs: reported_backoffs,
            });
        }
        if in_flight == 0 && queue.is_empty() {
            break;
        }

        // Drop deadline entries of sockets that already finished.
        while let Some(&(idx, g, _)) = deadlines.front() {
            if slots[idx].as_ref().is_some_and(|s| s.generation == g) {
                break;
            }
            deadlines.pop_front();
        }
        let now = Instant::now();
        let timeout = if backoff_until.is_none() && in_flight < window && !queue.is_empty() {
            Duration::ZERO
        } else {
            let deadline = deadlines.front().map(|&(_, _, d)| d);
            let wake = match (deadline, backoff_until) {
                (Some(d), Some(b)) => d.min(b),
                (Some(d), None) => d,
                (None, Some(b)) => b,
                (None, None) => now + config.timeout,
            };
            wake.saturating_duration_since(now)
        };
        // Round up to whole milliseconds so we never spin just before a deadline.
        let millis = timeout.as_micros().div_ceil(1000).min(u128::from(u16::MAX));
        let wait = EpollTimeout::from(u16::try_from(millis).unwrap_or(u16::MAX));
        let ready = match epoll.wait(&mut events, wait) {
            Ok(n) => n,
            Err(Errno::EINTR) => 0,
            Err(errno) => return Err(fatal("epoll_wait failed", errno)),
        };

        for event in &events[..ready] {
            let Ok(idx) = usize::try_from(event.data()) else {
                continue;
            };
            let Some(slot) = slots.get_mut(idx).and_then(Option::take) else {
                continue;
            };
            let target = SocketAddr::new(ip, slot.port);
            let settled = match settle(&slot.fd, &target) {
                Settled::Pending => {
                    slots[idx] = Some(slot);
                    continue;
                }
                Settled::Resource(_) | Settled::Fatal(_) => Settled::Filtered,
                other => other,
            };
            finish(
                settled,
                slot.port,
                slot.attempt,
                &mut out,
                &mut queue,
                &mut done,
                on_open,
            );
            free.push(idx);
            in_flight -= 1;
            // Dropping the descriptor closes it, which also removes it from the epoll set.
            drop(slot);
        }

        // Expire sockets past their deadline.
        let now = Instant::now();
        while let Some(&(idx, g, deadline)) = deadlines.front() {
            if deadline > now {
                break;
            }
            deadlines.pop_front();
            if let Some(slot) = slots[idx].take_if(|s| s.generation == g) {
                out.filtered.push(slot.port);
                done += 1;
                free.push(idx);
                in_flight -= 1;
            }
        }

        // Let the window grow back slowly after a resource back-off.
        if window < window_max && backoff_until.is_none() {
            window = (window + 1).min(window_max);
        }

        if done >= next_report {
            on_progress(SweepProgress {
                done,
                total,
                open: out.open.len(),
                resource_backoffs: out.stats.resource_backoffs,
            });
            next_report = done + 1024;
        }
    }
    out.open.sort_unstable();
    out.filtered.sort_unstable();
    out.stats.final_window = window;
    on_progress(SweepProgress {
        done,
        total,
        open: out.open.len(),
        resource_backoffs: out.stats.resource_backoffs,
    });
    Ok(out)
}

/// Records the outcome of one port (open, closed, filtered) or requeues a self-connect.
fn finish(
    settled: Settled,
    port: u16,
    attempt: u8,
    out: &mut SweepOutcome,
    queue: &mut VecDeque<(u16, u8)>,
    done: &mut usize,
    on_open: &mut dyn FnMut(u16),
) {
    match settled {
        Settled::Open => {
            out.open.push(port);
            on_open(port);
            *done += 1;
        }
        Settled::Closed => {
            out.closed += 1;
            *done += 1;
        }
        Settled::SelfConnect => {
            out.stats.self_connects += 1;
            if attempt < SELF_CONNECT_RETRIES {
                queue.push_front((port, attempt + 1));
            } else {
                // The kernel keeps handing out the target port as our source port: nothing
                // listens there (a listener would have taken the SYN), so it is closed.
                out.closed += 1;
                *done += 1;
            }
        }
        Settled::Filtered | Settled::Pending | Settled::Resource(_) | Settled::Fatal(_) => {
            out.filtered.push(port);
            *done += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpListener};

    #[test]
    fn finds_own_listeners_and_closed_ports() {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let b = TcpListener::bind("127.0.0.1:0").unwrap();
        let pa = a.local_addr().unwrap().port();
        let pb = b.local_addr().unwrap().port();
        // A port that was free a moment ago: bind and drop.
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut seen = Vec::new();
        let out = sweep(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            &[pa, pb, closed],
            SweepConfig::new(2, Duration::from_secs(2)),
            |p| seen.push(p),
            |_| {},
        )
        .unwrap();
        let mut want = vec![pa, pb];
        want.sort_unstable();
        assert_eq!(out.open, want);
        assert_eq!(out.closed, 1);
        assert!(out.filtered.is_empty());
        seen.sort_unstable();
        assert_eq!(seen, want);
    }

    #[test]
    fn detects_self_connect() {
        // A socket bound to port P connecting to 127.0.0.1:P connects to itself (TCP
        // simultaneous open): exactly what an ephemeral source port equal to the target port
        // produces in a sweep.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let target = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let fd = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        setsockopt(&fd, sockopt::ReuseAddr, &true).unwrap();
        nix::sys::socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(target)).unwrap();
        connect(fd.as_raw_fd(), &SockaddrStorage::from(target)).unwrap();
        assert!(matches!(settle(&fd, &target), Settled::SelfConnect));
    }

    #[test]
    fn resource_errors_are_retried_not_fatal() {
        assert_eq!(classify(Errno::EMFILE), Class::Resource);
        assert_eq!(classify(Errno::ENFILE), Class::Resource);
        assert_eq!(classify(Errno::EADDRNOTAVAIL), Class::Resource);
        assert_eq!(classify(Errno::ECONNREFUSED), Class::Refused);
        assert_eq!(classify(Errno::EHOSTUNREACH), Class::Unreachable);
    }

    #[test]
    fn unanswered_connects_are_filtered_after_the_timeout() {
        // A listener whose accept queue is full drops SYNs: the connect stays pending. The
        // inline wait expires, the socket moves to epoll, and its deadline marks it filtered,
        // while the other ports are still found.
        let fd = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        nix::sys::socket::bind(
            fd.as_raw_fd(),
            &SockaddrStorage::from(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))),
        )
        .unwrap();
        nix::sys::socket::listen(&fd, nix::sys::socket::Backlog::new(0).unwrap()).unwrap();
        let full =
            to_socket_addr(&getsockname::<SockaddrStorage>(fd.as_raw_fd()).unwrap()).unwrap();
        // Fill the accept queue (backlog 0 admits one).
        let mut fillers = Vec::new();
        for _ in 0..2 {
            if let Ok(s) = std::net::TcpStream::connect_timeout(&full, Duration::from_millis(200)) {
                fillers.push(s);
            }
        }
        let open = TcpListener::bind("127.0.0.1:0").unwrap();
        let open_port = open.local_addr().unwrap().port();
        let out = sweep(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            &[full.port(), open_port],
            SweepConfig::new(8, Duration::from_millis(300)),
            |_| {},
            |_| {},
        )
        .unwrap();
        assert_eq!(out.filtered, vec![full.port()]);
        assert_eq!(out.open, vec![open_port]);
        assert!(out.stats.max_in_flight >= 1);
    }

    #[test]
    fn threaded_loopback_sweep_matches() {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let pa = a.local_addr().unwrap().port();
        let start = pa.saturating_sub(3000).max(1);
        let ports: Vec<u16> =
            (start..=start.saturating_add(SHARD_MIN_PORTS as u16 + 1000)).collect();
        let mut config = SweepConfig::new(64, Duration::from_secs(2));
        config.threads = 2;
        let opened = Mutex::new(Vec::new());
        let mut last = None;
        let out = sweep(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            &ports,
            config,
            |p| opened.lock().unwrap().push(p),
            |p| last = Some(p),
        )
        .unwrap();
        // Our listener, plus whatever other programs listen on in that range.
        let listening: Vec<u16> = crate::local::tcp_listeners()
            .iter()
            .map(|l| l.port)
            .collect();
        assert!(out.open.contains(&pa));
        assert!(
            out.open.iter().all(|p| *p == pa || listening.contains(p)),
            "{:?}",
            out.open
        );
        assert_eq!(
            out.open.len() + out.closed + out.filtered.len(),
            ports.len()
        );
        let mut seen = opened.into_inner().unwrap();
        seen.sort_unstable();
        assert_eq!(seen, out.open);
        let last = last.unwrap();
        assert_eq!(last.done, ports.len());
        assert_eq!(last.total, ports.len());
    }
}
