//! The four RFC 3261 §17 transaction state machines (INVITE / non-INVITE ×
//! client / server) as pure transition functions over an explicit [`State`],
//! and the timer arithmetic (T1, T2, T4; timers A–K).
//!
//! The state itself is plain data stored with the transaction in shm; these
//! functions are the only way tm changes it, so an illegal transition is an
//! error value instead of a silently corrupt transaction.

/// A transaction state, named as in RFC 3261 §17.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// INVITE client: request sent, no reply yet (timers A, B).
    Calling,
    /// Non-INVITE client or server: request sent/received, no reply yet.
    Trying,
    /// A provisional reply was received (client) or sent (server).
    Proceeding,
    /// A final reply (non-2xx for INVITE) was received (client) or sent (server).
    Completed,
    /// INVITE server: the ACK for our non-2xx reply arrived (timer I).
    Confirmed,
    /// Done; the transaction only waits to be freed.
    Terminated,
}

impl State {
    /// The value stored in shm.
    pub fn code(self) -> u64 {
        self as u64
    }

    /// Back from the stored value (unknown values read as `Terminated`, which
    /// only lets the wait timer free the transaction).
    pub fn from_code(c: u64) -> State {
        match c {
            0 => State::Calling,
            1 => State::Trying,
            2 => State::Proceeding,
            3 => State::Completed,
            4 => State::Confirmed,
            _ => State::Terminated,
        }
    }
}

/// What happens to a server transaction (the upstream side of tm).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerEvent {
    /// We send (or relay) a reply with this code upstream.
    Send(u16),
    /// The ACK for our non-2xx final reply arrived.
    Ack,
    /// Timer H (INVITE, no ACK), I (after ACK) or J (non-INVITE) fired.
    Timeout,
}

/// What happens to a client transaction (one branch of tm).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEvent {
    /// A reply with this code arrived.
    Reply(u16),
    /// Timer B/F or tm's `fr_timer`/`fr_inv_timer` fired, or sending failed.
    Timeout,
    /// Timer D/K fired (the completed branch stops absorbing retransmissions).
    Cleanup,
}

/// A transition the state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Illegal {
    /// The state.
    pub from: State,
    /// What was attempted.
    pub what: &'static str,
}

/// The initial state of a server transaction (RFC 3261 §17.2.1: an INVITE
/// server transaction starts in Proceeding and sends 100 Trying).
pub fn server_initial(invite: bool) -> State {
    if invite {
        State::Proceeding
    } else {
        State::Trying
    }
}

/// The initial state of a client transaction.
pub fn client_initial(invite: bool) -> State {
    if invite {
        State::Calling
    } else {
        State::Trying
    }
}

/// Server transaction transitions (Figures 7 and 8 of RFC 3261). A 2xx to an
/// INVITE terminates it; tm still keeps it for the wait timer to relay 2xx
/// from other branches, so `Terminated --2xx--> Terminated` is allowed.
pub fn server_next(invite: bool, s: State, ev: ServerEvent) -> Result<State, Illegal> {
    use ServerEvent::*;
    use State::*;
    let bad = |what| Err(Illegal { from: s, what });
    match (invite, s, ev) {
        (_, Trying | Proceeding, Send(c)) if c < 200 => Ok(Proceeding),
        (true, Proceeding, Send(c)) if c < 300 => Ok(Terminated),
        (true, Terminated, Send(c)) if (200..300).contains(&c) => Ok(Terminated),
        (true, Proceeding, Send(_)) => Ok(Completed),
        (false, Trying | Proceeding, Send(_)) => Ok(Completed),
        (true, Completed, Ack) => Ok(Confirmed),
        (true, Confirmed | Terminated, Ack) => Ok(s),
        (_, Completed | Confirmed, Timeout) => Ok(Terminated),
        (_, Terminated, Timeout) => Ok(Terminated),
        (_, _, Send(_)) => bad("send a reply"),
        (_, _, Ack) => bad("accept an ACK"),
        (_, _, Timeout) => bad("time out"),
    }
}

/// Client transaction transitions (Figures 5 and 6 of RFC 3261).
pub fn client_next(invite: bool, s: State, ev: ClientEvent) -> Result<State, Illegal> {
    use ClientEvent::*;
    use State::*;
    let bad = |what| Err(Illegal { from: s, what });
    match (invite, s, ev) {
        (_, Calling | Trying | Proceeding, Reply(c)) if c < 200 => Ok(Proceeding),
        (true, Calling | Proceeding, Reply(c)) if c < 300 => Ok(Terminated),
        (true, Calling | Proceeding, Reply(_)) => Ok(Completed),
        (false, Trying | Proceeding, Reply(_)) => Ok(Completed),
        // Retransmitted finals are absorbed (INVITE: the ACK is re-sent).
        (_, Completed, Reply(c)) if c >= 200 => Ok(Completed),
        (_, Calling | Trying | Proceeding, Timeout) => Ok(Terminated),
        (_, Completed, Cleanup) => Ok(Terminated),
        (_, Terminated, Cleanup | Timeout) => Ok(Terminated),
        (_, _, Reply(_)) => bad("accept a reply"),
        (_, _, Timeout) => bad("time out"),
        (_, _, Cleanup) => bad("clean up"),
    }
}

/// Whether a client state still waits for a final reply.
pub fn client_pending(s: State) -> bool {
    matches!(s, State::Calling | State::Trying | State::Proceeding)
}

/// tm's timer values in milliseconds (modparams `retr_timer1`,
/// `retr_timer2`, `fr_timer`, `fr_inv_timer`, `wt_timer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// T1: RTT estimate, first retransmission interval (500 ms).
    pub t1: u32,
    /// T2: cap of non-INVITE retransmission intervals (4 s).
    pub t2: u32,
    /// T4: how long the network keeps a message (5 s; timers I, K).
    pub t4: u32,
    /// Final-response timer for non-INVITE and for INVITE before any reply (timers B, F).
    pub fr: u32,
    /// Final-response timer for INVITE after a provisional reply (timer C).
    pub fr_inv: u32,
    /// How long a finished transaction waits to absorb retransmissions.
    pub wt: u32,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: 500,
            t2: 4000,
            t4: 5000,
            fr: 30_000,
            fr_inv: 120_000,
            wt: 5000,
        }
    }
}

impl Timers {
    /// The retransmission interval after `cur` (timers A, E, G double; E and
    /// G — and A once in Proceeding, which never happens as A stops — are capped at T2).
    pub fn next_retr(&self, cur: u32, invite_client: bool) -> u32 {
        let doubled = cur.saturating_mul(2);
        if invite_client {
            doubled
        } else {
            doubled.min(self.t2)
        }
    }

    /// Timer E once a non-INVITE client transaction is in Proceeding: T2.
    pub fn retr_in_proceeding(&self) -> u32 {
        self.t2
    }

    /// Timer H / J: 64·T1.
    pub fn timer_h(&self) -> u32 {
        self.t1.saturating_mul(64)
    }

    /// The retransmission intervals of a request sent at 0 until `limit` ms
    /// (for tests and `tm.list`): the send times of retransmissions.
    pub fn retr_schedule(&self, invite_client: bool, limit: u32) -> Vec<u32> {
        let mut out = Vec::new();
        let (mut at, mut iv) = (0u32, self.t1);
        loop {
            at = at.saturating_add(iv);
            if at >= limit || out.len() > 64 {
                return out;
            }
            out.push(at);
            iv = self.next_retr(iv, invite_client);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invite_server() {
        let s = server_initial(true);
        assert_eq!(s, State::Proceeding);
        let s = server_next(true, s, ServerEvent::Send(180)).unwrap();
        assert_eq!(s, State::Proceeding);
        let c = server_next(true, s, ServerEvent::Send(486)).unwrap();
        assert_eq!(c, State::Completed);
        let k = server_next(true, c, ServerEvent::Ack).unwrap();
        assert_eq!(k, State::Confirmed);
        assert_eq!(
            server_next(true, k, ServerEvent::Timeout),
            Ok(State::Terminated)
        );
        assert_eq!(
            server_next(true, c, ServerEvent::Timeout),
            Ok(State::Terminated)
        );
        let t = server_next(true, s, ServerEvent::Send(200)).unwrap();
        assert_eq!(t, State::Terminated);
        assert_eq!(
            server_next(true, t, ServerEvent::Send(200)),
            Ok(State::Terminated)
        );
        assert!(server_next(true, t, ServerEvent::Send(486)).is_err());
        assert!(server_next(true, c, ServerEvent::Send(200)).is_err());
        assert!(server_next(true, s, ServerEvent::Ack).is_err());
    }

    #[test]
    fn non_invite_server() {
        let s = server_initial(false);
        assert_eq!(s, State::Trying);
        let p = server_next(false, s, ServerEvent::Send(100)).unwrap();
        assert_eq!(p, State::Proceeding);
        let c = server_next(false, p, ServerEvent::Send(200)).unwrap();
        assert_eq!(c, State::Completed);
        assert!(server_next(false, c, ServerEvent::Send(200)).is_err());
        assert_eq!(
            server_next(false, c, ServerEvent::Timeout),
            Ok(State::Terminated)
        );
        assert!(server_next(false, s, ServerEvent::Timeout).is_err());
    }

    #[test]
    fn invite_client() {
        let s = client_initial(true);
        assert_eq!(s, State::Calling);
        let p = client_next(true, s, ClientEvent::Reply(180)).unwrap();
        assert_eq!(p, State::Proceeding);
        assert_eq!(
            client_next(true, p, ClientEvent::Reply(200)),
            Ok(State::Terminated)
        );
        let c = client_next(true, p, ClientEvent::Reply(486)).unwrap();
        assert_eq!(c, State::Completed);
        assert_eq!(
            client_next(true, c, ClientEvent::Reply(486)),
            Ok(State::Completed)
        );
        assert!(client_next(true, c, ClientEvent::Reply(180)).is_err());
        assert_eq!(
            client_next(true, c, ClientEvent::Cleanup),
            Ok(State::Terminated)
        );
        assert_eq!(
            client_next(true, s, ClientEvent::Timeout),
            Ok(State::Terminated)
        );
        assert!(client_pending(p) && !client_pending(c));
    }

    #[test]
    fn non_invite_client() {
        let s = client_initial(false);
        assert_eq!(s, State::Trying);
        let c = client_next(false, s, ClientEvent::Reply(404)).unwrap();
        assert_eq!(c, State::Completed);
        assert!(client_next(false, State::Terminated, ClientEvent::Reply(200)).is_err());
        assert_eq!(
            client_next(false, s, ClientEvent::Timeout),
            Ok(State::Terminated)
        );
    }

    #[test]
    fn stored_codes_round_trip() {
        for s in [
            State::Calling,
            State::Trying,
            State::Proceeding,
            State::Completed,
            State::Confirmed,
            State::Terminated,
        ] {
            assert_eq!(State::from_code(s.code()), s);
        }
        assert_eq!(State::from_code(99), State::Terminated);
    }

    #[test]
    fn timer_arithmetic() {
        let t = Timers::default();
        // Timer E: 500, 1000, 2000, 4000, 4000 ... (capped at T2)
        assert_eq!(t.next_retr(500, false), 1000);
        assert_eq!(t.next_retr(4000, false), 4000);
        assert_eq!(t.next_retr(2000, false), 4000);
        // Timer A doubles without cap.
        assert_eq!(t.next_retr(4000, true), 8000);
        assert_eq!(t.timer_h(), 32_000);
        assert_eq!(t.retr_in_proceeding(), 4000);
        // Within timer B (64*T1) an INVITE goes out 7 times: at 0 and these (RFC 3261 §17.1.1.2).
        let a = t.retr_schedule(true, t.timer_h());
        assert_eq!(a, vec![500, 1500, 3500, 7500, 15500, 31500]);
        let e = t.retr_schedule(false, t.timer_h());
        assert_eq!(&e[..6], &[500, 1500, 3500, 7500, 11500, 15500]);
        assert_eq!(t.next_retr(u32::MAX, true), u32::MAX);
    }
}
