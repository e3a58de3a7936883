//! The timeouts of one client connection, phase by phase.
//!
//! A connection is always waiting for something, and each wait has its own
//! bound: the first byte after accept, the end of the TLS handshake, the end
//! of a request head, the next request while idle, and the peer's close once
//! sluice has begun closing. While a request is in flight there is none:
//! the request's own timeouts apply (and HTTP/2 keep-alive pings find peers
//! that went away). This is the pure core, driven by what the connection
//! does and when; `connection.rs` feeds it and acts on its deadlines.

use std::time::Duration;
use tokio::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub first_byte: Duration,
    /// From accept; only with TLS.
    pub tls_handshake: Duration,
    pub header_read: Duration,
    pub idle: Duration,
    /// Once a close has begun and nothing is in flight: how long the peer
    /// has to finish it (an HTTP/2 GOAWAY exchange).
    pub close: Duration,
}

/// What ran out of time. `Idle` asks for a graceful close; the others for
/// closing at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    FirstByte,
    TlsHandshake,
    HeaderRead,
    Idle,
    Close,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Nothing received since `since` (accept, or the end of the handshake).
    FirstByte { since: Instant },
    /// Bytes of the TLS handshake received; bounded from accept.
    Handshake,
    /// A request head has begun (HTTP/1), or the connection's first bytes
    /// arrived and its first stream has not (HTTP/2).
    Headers { since: Instant },
    /// Requests in flight.
    Busy,
    /// No request in flight since `since`.
    Idle { since: Instant },
    /// Closing, with nothing in flight since `since`.
    Closing { since: Instant },
}

#[derive(Debug)]
pub struct Lifecycle {
    timeouts: Timeouts,
    accepted: Instant,
    phase: Phase,
    in_flight: usize,
    handshaking: bool,
    http2: bool,
    closing: bool,
}

// === impl Expiry ===

impl Expiry {
    /// The `phase` label of `sluice_connection_timeouts_total`.
    pub fn phase(self) -> &'static str {
        match self {
            Expiry::FirstByte => "first_byte",
            Expiry::TlsHandshake => "tls_handshake",
            Expiry::HeaderRead => "header_read",
            Expiry::Idle => "idle",
            Expiry::Close => "close",
        }
    }
}

// === impl Lifecycle ===

impl Lifecycle {
    /// A connection accepted at `now`; `tls` if a handshake comes first.
    pub fn new(timeouts: Timeouts, tls: bool, now: Instant) -> Self {
        Lifecycle {
            timeouts,
            accepted: now,
            phase: Phase::FirstByte { since: now },
            in_flight: 0,
            handshaking: tls,
            http2: false,
            closing: false,
        }
    }

    /// Whether a byte read now would change the phase (so the reader can
    /// skip telling us most of the time).
    pub fn wants_bytes(&self) -> bool {
        match self.phase {
            Phase::FirstByte { .. } => true,
            Phase::Idle { .. } => !self.http2,
            _ => false,
        }
    }

    pub fn byte_read(&mut self, now: Instant) {
        self.phase = match self.phase {
            Phase::FirstByte { .. } if self.handshaking => Phase::Handshake,
            Phase::FirstByte { .. } => Phase::Headers { since: now },
            // HTTP/1: the next request's head has begun. HTTP/2 frames
            // between streams (PING, SETTINGS, WINDOW_UPDATE) are no request.
            Phase::Idle { .. } if !self.http2 => Phase::Headers { since: now },
            phase => phase,
        }
    }

    /// The TLS handshake is done: now the first byte of HTTP.
    pub fn handshake_done(&mut self, now: Instant) {
        self.handshaking = false;
        if matches!(self.phase, Phase::FirstByte { .. } | Phase::Handshake) {
            self.phase = Phase::FirstByte { since: now };
        }
    }

    /// A request head arrived (its service was called).
    pub fn request_started(&mut self, http2: bool) {
        self.in_flight += 1;
        self.http2 |= http2;
        self.phase = Phase::Busy;
    }

    /// A response ended (or its request was abandoned).
    pub fn request_ended(&mut self, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if self.in_flight == 0 {
            self.phase = self.at_rest(now);
        }
    }

    /// A graceful close has begun (idle, or the server is stopping):
    /// requests in flight finish, then the peer has `close` to go.
    pub fn close_begun(&mut self, now: Instant) {
        self.closing = true;
        if self.in_flight == 0 {
            self.phase = Phase::Closing { since: now };
        }
    }

    /// When the current wait runs out, and what ran out; `None` while
    /// requests are in flight (or past any representable time).
    pub fn deadline(&self) -> Option<(Instant, Expiry)> {
        let t = &self.timeouts;
        let after = |since: Instant, timeout: Duration, expiry: Expiry| {
            since.checked_add(timeout).map(|at| (at, expiry))
        };
        match self.phase {
            Phase::FirstByte { since } if self.handshaking => {
                let first_byte = after(since, t.first_byte, Expiry::FirstByte);
                let handshake = after(self.accepted, t.tls_handshake, Expiry::TlsHandshake);
                match (first_byte, handshake) {
                    (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
                    (a, b) => a.or(b),
                }
            }
            Phase::FirstByte { since } => after(since, t.first_byte, Expiry::FirstByte),
            Phase::Handshake => after(self.accepted, t.tls_handshake, Expiry::TlsHandshake),
            Phase::Headers { since } => after(since, t.header_read, Expiry::HeaderRead),
            Phase::Busy => None,
            Phase::Idle { since } => after(since, t.idle, Expiry::Idle),
            Phase::Closing { since } => after(since, t.close, Expiry::Close),
        }
    }

    /// How long a watcher may wait without looking, whatever the phase:
    /// the shorter of the header read and idle timeouts, but at least a
    /// second. The common phases that start later (a request's head after
    /// an idle time, the idle time after a response) then end no sooner
    /// than the watcher looks again, so they need not wake it; a phase that
    /// could end sooner (a short close or first-byte timeout, a header read
    /// timeout under a second) does wake it (`Watch::update`).
    pub fn check_in(&self) -> Duration {
        let t = &self.timeouts;
        t.header_read.min(t.idle).max(Duration::from_secs(1))
    }

    /// What has run out at `now`, if anything.
    pub fn expired(&self, now: Instant) -> Option<Expiry> {
        self.deadline()
            .filter(|(at, _)| *at <= now)
            .map(|(_, expiry)| expiry)
    }

    fn at_rest(&self, now: Instant) -> Phase {
        if self.closing {
            Phase::Closing { since: now }
        } else {
            Phase::Idle { since: now }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn timeouts() -> Timeouts {
        Timeouts {
            first_byte: 10 * MS,
            tls_handshake: 15 * MS,
            header_read: 30 * MS,
            idle: 60 * MS,
            close: 20 * MS,
        }
    }

    #[test]
    fn a_watcher_checks_in_within_the_shorter_of_header_read_and_idle_but_not_more_than_each_second(
    ) {
        let t0 = Instant::now();
        let with = |header_read: Duration, idle: Duration| {
            let t = Timeouts {
                header_read,
                idle,
                ..timeouts()
            };
            Lifecycle::new(t, false, t0).check_in()
        };
        let s = Duration::from_secs(1);
        assert_eq!(with(30 * s, 60 * s), 30 * s);
        assert_eq!(with(30 * s, 5 * s), 5 * s);
        assert_eq!(with(30 * MS, 60 * s), s, "at most once a second");
    }

    fn at(t0: Instant, ms: u32) -> Instant {
        t0 + ms * MS
    }

    #[test]
    fn a_silent_connection_runs_out_of_its_first_byte_time() {
        let t0 = Instant::now();
        let c = Lifecycle::new(timeouts(), false, t0);
        assert!(c.wants_bytes());
        assert_eq!(c.expired(at(t0, 9)), None);
        assert_eq!(c.expired(at(t0, 10)), Some(Expiry::FirstByte));
    }

    #[test]
    fn a_head_has_header_read_timeout_from_its_first_byte() {
        let t0 = Instant::now();
        let mut c = Lifecycle::new(timeouts(), false, t0);
        c.byte_read(at(t0, 5));
        assert!(!c.wants_bytes());
        assert_eq!(c.deadline(), Some((at(t0, 35), Expiry::HeaderRead)));
        // More bytes do not extend it: a trickling head still ends.
        c.byte_read(at(t0, 30));
        assert_eq!(c.expired(at(t0, 35)), Some(Expiry::HeaderRead));
    }

    #[test]
    fn no_timeout_while_busy_then_idle_from_the_last_response() {
        let t0 = Instant::now();
        let mut c = Lifecycle::new(timeouts(), false, t0);
        c.byte_read(t0);
        c.request_started(false);
        c.request_started(false);
        assert_eq!(c.deadline(), None);
        c.request_ended(at(t0, 1_000));
        assert_eq!(c.deadline(), None, "one still in flight");
        c.request_ended(at(t0, 2_000));
        assert_eq!(c.deadline(), Some((at(t0, 2_060), Expiry::Idle)));
    }

    #[test]
    fn http1_idle_turns_to_headers_on_a_byte_http2_stays_idle() {
        let t0 = Instant::now();
        let mut h1 = Lifecycle::new(timeouts(), false, t0);
        h1.request_started(false);
        h1.request_ended(t0);
        assert!(h1.wants_bytes());
        h1.byte_read(at(t0, 50));
        assert_eq!(h1.deadline(), Some((at(t0, 80), Expiry::HeaderRead)));

        let mut h2 = Lifecycle::new(timeouts(), false, t0);
        h2.byte_read(t0);
        h2.request_started(true);
        h2.request_ended(t0);
        assert!(!h2.wants_bytes());
        h2.byte_read(at(t0, 50));
        assert_eq!(h2.deadline(), Some((at(t0, 60), Expiry::Idle)));
    }

    #[test]
    fn tls_bounds_the_handshake_from_accept_then_waits_for_http() {
        let t0 = Instant::now();
        let mut c = Lifecycle::new(timeouts(), true, t0);
        // First byte (10 ms) before the handshake's bound (15 ms).
        assert_eq!(c.deadline(), Some((at(t0, 10), Expiry::FirstByte)));
        c.byte_read(at(t0, 2));
        assert_eq!(c.deadline(), Some((at(t0, 15), Expiry::TlsHandshake)));
        c.handshake_done(at(t0, 12));
        assert_eq!(c.deadline(), Some((at(t0, 22), Expiry::FirstByte)));

        let short = Timeouts {
            tls_handshake: 5 * MS,
            ..timeouts()
        };
        let c = Lifecycle::new(short, true, t0);
        assert_eq!(c.deadline(), Some((at(t0, 5), Expiry::TlsHandshake)));
    }

    #[test]
    fn a_close_waits_for_requests_then_gives_the_peer_its_time() {
        let t0 = Instant::now();
        let mut c = Lifecycle::new(timeouts(), false, t0);
        c.request_started(true);
        c.close_begun(at(t0, 1));
        assert_eq!(c.deadline(), None);
        c.request_ended(at(t0, 100));
        assert_eq!(c.deadline(), Some((at(t0, 120), Expiry::Close)));
        c.byte_read(at(t0, 110));
        assert_eq!(c.deadline(), Some((at(t0, 120), Expiry::Close)));
    }

    #[test]
    fn timeouts_past_any_representable_time_never_expire() {
        let t0 = Instant::now();
        let forever = Timeouts {
            first_byte: Duration::MAX,
            ..timeouts()
        };
        let c = Lifecycle::new(forever, false, t0);
        assert_eq!(c.deadline(), None);
        let c = Lifecycle::new(forever, true, t0);
        assert_eq!(c.deadline(), Some((at(t0, 15), Expiry::TlsHandshake)));
    }
}
