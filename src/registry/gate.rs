//! Who may hold the registry's resources: the connection table (a share of connection
//! slots kept for authenticated clients, unauthenticated ones bounded per client address
//! and overall, the oldest idle one closed to make room) and the failed-login limiter (a
//! token bucket per client address).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::limits::Limits;

/// A connection as the gate knows it.
struct Entry {
    ip: IpAddr,
    authenticated: bool,
    close: Arc<Notify>,
    busy: Arc<AtomicBool>,
}

#[derive(Default)]
struct Table {
    next: u64,
    /// By id, so the first entries are the oldest.
    entries: BTreeMap<u64, Entry>,
    unauthenticated: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl Table {
    fn demote(&mut self, id: u64) {
        if let Some(e) = self.entries.get(&id) {
            if !e.authenticated {
                self.unauthenticated -= 1;
                if let Some(n) = self.per_ip.get_mut(&e.ip) {
                    *n -= 1;
                    if *n == 0 {
                        self.per_ip.remove(&e.ip);
                    }
                }
            }
        }
    }

    /// Ask the oldest unauthenticated connection without a request in flight (of `ip`
    /// when given) to close, and stop counting it. False when there is none.
    fn evict(&mut self, ip: Option<IpAddr>) -> bool {
        let victim = self
            .entries
            .iter()
            .find(|(_, e)| !e.authenticated && ip.map_or(true, |ip| e.ip == ip) && !e.busy.load(Ordering::Relaxed))
            .map(|(id, _)| *id);
        let Some(id) = victim else { return false };
        self.demote(id);
        if let Some(e) = self.entries.remove(&id) {
            e.close.notify_one();
        }
        true
    }
}

/// The connection table.
pub struct Gate {
    limits: Limits,
    table: Mutex<Table>,
}

/// What a request knows of its connection (a request extension the server adds).
#[derive(Clone)]
pub struct Conn {
    pub peer: SocketAddr,
    pub ticket: Arc<Ticket>,
}

/// A connection's place in the table; leaving it frees the place.
pub struct Ticket {
    gate: Arc<Gate>,
    id: u64,
    /// Notified when the gate wants the connection closed.
    pub close: Arc<Notify>,
    /// Set while a request is being answered (such a connection is not evicted).
    pub busy: Arc<AtomicBool>,
    /// Whether the last request was answered before its body was read.
    pub body_unread: AtomicBool,
    authenticated: AtomicBool,
}

impl Gate {
    pub fn new(limits: Limits) -> Arc<Gate> {
        Arc::new(Gate { limits, table: Mutex::new(Table::default()) })
    }

    /// Admit a new connection from `peer`, closing older idle unauthenticated ones when
    /// their share is full. None when every slot is held by authenticated or busy
    /// connections (the new one is then refused).
    pub fn admit(self: &Arc<Gate>, peer: SocketAddr) -> Option<Ticket> {
        let mut t = self.table.lock().ok()?;
        let ip = peer.ip();
        if t.per_ip.get(&ip).copied().unwrap_or(0) >= self.limits.max_unauthenticated_per_client && !t.evict(Some(ip)) {
            return None;
        }
        if t.unauthenticated >= self.limits.max_unauthenticated && !t.evict(None) {
            return None;
        }
        if t.entries.len() >= self.limits.max_connections && !t.evict(None) {
            return None;
        }
        let id = t.next;
        t.next += 1;
        let close = Arc::new(Notify::new());
        let busy = Arc::new(AtomicBool::new(false));
        t.entries.insert(id, Entry { ip, authenticated: false, close: Arc::clone(&close), busy: Arc::clone(&busy) });
        t.unauthenticated += 1;
        *t.per_ip.entry(ip).or_insert(0) += 1;
        Some(Ticket {
            gate: Arc::clone(self),
            id,
            close,
            busy,
            body_unread: AtomicBool::new(false),
            authenticated: AtomicBool::new(false),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

impl Ticket {
    /// The connection made an authenticated request: it no longer counts against the
    /// unauthenticated share and is never evicted.
    pub fn authenticated(&self) {
        if self.authenticated.swap(true, Ordering::Relaxed) {
            return;
        }
        if let Ok(mut t) = self.gate.table.lock() {
            t.demote(self.id);
            if let Some(e) = t.entries.get_mut(&self.id) {
                e.authenticated = true;
            }
        }
    }

    pub fn limits(&self) -> &Limits {
        self.gate.limits()
    }

    pub fn is_authenticated(&self) -> bool {
        self.authenticated.load(Ordering::Relaxed)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Ok(mut t) = self.gate.table.lock() {
            t.demote(self.id);
            t.entries.remove(&self.id);
        }
    }
}

/// Failed logins per client address: a token bucket of `login_burst` tokens, one more
/// every `login_refill`. A failed login takes a token; with none left, logins from that
/// address are answered 429 (without a password check) until one comes back.
pub struct LoginLimiter {
    burst: f64,
    refill: Duration,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

/// Addresses remembered at most; full buckets are forgotten first.
const MAX_TRACKED: usize = 65_536;

impl LoginLimiter {
    pub fn new(limits: &Limits) -> LoginLimiter {
        LoginLimiter {
            burst: f64::from(limits.login_burst.max(1)),
            refill: limits.login_refill.max(Duration::from_millis(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn level(&self, tokens: f64, since: Instant, now: Instant) -> f64 {
        (tokens + now.duration_since(since).as_secs_f64() / self.refill.as_secs_f64()).min(self.burst)
    }

    /// None when `ip` may try a password now, else how long until it may.
    pub fn blocked(&self, ip: IpAddr) -> Option<Duration> {
        self.blocked_at(ip, Instant::now())
    }

    /// Record a failed login from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        self.failed_at(ip, Instant::now())
    }

    fn blocked_at(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let buckets = self.buckets.lock().ok()?;
        let &(tokens, since) = buckets.get(&ip)?;
        let level = self.level(tokens, since, now);
        (level < 1.0).then(|| self.refill.mul_f64(1.0 - level))
    }

    fn failed_at(&self, ip: IpAddr, now: Instant) {
        let Ok(mut buckets) = self.buckets.lock() else { return };
        if buckets.len() >= MAX_TRACKED {
            buckets.retain(|_, (t, s)| self.level(*t, *s, now) < self.burst);
        }
        let (tokens, since) = buckets.get(&ip).copied().unwrap_or((self.burst, now));
        let level = self.level(tokens, since, now);
        buckets.insert(ip, ((level - 1.0).max(0.0), now));
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    fn addr(last: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, last], port))
    }

    #[test]
    fn the_oldest_idle_unauthenticated_connection_makes_room() {
        let limits = Limits {
            max_connections: 4,
            max_unauthenticated: 2,
            max_unauthenticated_per_client: 2,
            ..Limits::default()
        };
        let gate = Gate::new(limits);
        let a = gate.admit(addr(1, 1)).unwrap();
        a.authenticated();
        let b = gate.admit(addr(2, 1)).unwrap();
        let c = gate.admit(addr(3, 1)).unwrap();
        // The unauthenticated share (2) is full: b, the oldest, is asked to close.
        let d = gate.admit(addr(4, 1)).unwrap();
        assert!(b.close.notified().now_or_never().is_some());
        // A busy connection is not evicted; with every other slot taken the new one waits outside.
        c.busy.store(true, Ordering::Relaxed);
        d.busy.store(true, Ordering::Relaxed);
        assert!(gate.admit(addr(5, 1)).is_none());
        drop((a, b, c, d));
    }

    #[test]
    fn one_client_address_cannot_take_the_unauthenticated_share() {
        let limits = Limits { max_unauthenticated_per_client: 2, ..Limits::default() };
        let gate = Gate::new(limits);
        let a = gate.admit(addr(1, 1)).unwrap();
        let _b = gate.admit(addr(1, 2)).unwrap();
        let _c = gate.admit(addr(1, 3)).unwrap();
        assert!(a.close.notified().now_or_never().is_some(), "the client's oldest connection makes room");
        let _other = gate.admit(addr(2, 1)).unwrap();
    }

    #[test]
    fn failed_logins_run_out_and_come_back() {
        let limits = Limits { login_burst: 3, login_refill: Duration::from_millis(200), ..Limits::default() };
        let l = LoginLimiter::new(&limits);
        let ip: IpAddr = [10, 0, 0, 1].into();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.blocked_at(ip, t0).is_none());
            l.failed_at(ip, t0);
        }
        let wait = l.blocked_at(ip, t0).expect("blocked after the burst");
        assert!(wait <= Duration::from_millis(200));
        assert!(l.blocked_at([10, 0, 0, 2].into(), t0).is_none(), "other addresses are not affected");
        assert!(l.blocked_at(ip, t0 + Duration::from_millis(100)).is_some());
        assert!(l.blocked_at(ip, t0 + Duration::from_millis(210)).is_none(), "a token came back");
    }
}
