//! The stateful proxy core: the transaction table in shm, creating
//! transactions, forking branches, processing replies, CANCEL, timers and
//! the wait timer that frees a transaction exactly once.
//!
//! Every operation follows one pattern: prepare in private memory, commit
//! under the bucket lock (read the words, run the state machine, write them
//! back), then send and run script routes with no lock held.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, Weak};
use std::time::Instant;

use ser_shm::{HashTable, ShmBox, ShmStr, ShmVec};
use ser_sip::{HeaderName, Lumps, SipMsg};

use crate::iface::{RouteEnd, RouteMask, RouteRunner};
use crate::runtime::ctx::{Env, MsgCtx};
use crate::runtime::flags::Flags;
use crate::runtime::transport::{Dest, Proto};

use super::matching::{matches, KeyOffs, Purpose};
use super::select::{local_reason, pick_best, relayed_code};
use super::state::{
    client_initial, client_next, client_pending, server_initial, server_next, ClientEvent,
    ServerEvent, State, Timers,
};
use super::tx::{BranchData, BranchSlot, Meta, TxData, TxSlot, BR_WORDS, TX_WORDS};

/// Statistics counters in shm (`tm.stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Stat {
    /// Transactions created.
    Created,
    /// Transactions freed.
    Freed,
    /// Transactions on the wait timer now.
    Waiting,
    /// Requests we originated: transactions of our own (UAC) and the
    /// hop-by-hop CANCELs and ACKs tm generates.
    TotalLocal,
    /// Final replies we generated ourselves.
    RepliedLocally,
    /// Final 2xx sent upstream.
    Rpl2xx,
    /// Final 3xx sent upstream.
    Rpl3xx,
    /// Final 4xx sent upstream.
    Rpl4xx,
    /// Final 5xx sent upstream.
    Rpl5xx,
    /// Final 6xx sent upstream.
    Rpl6xx,
}

/// Number of counters.
pub const STATS: usize = 10;

/// [`Tm::create`]'s error when shm is full (already logged, rate-limited).
pub const NO_SHM: &str = "out of shared memory";

/// The module params that shape behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Params {
    /// Restart the fr timer of a branch on each provisional reply.
    pub restart_fr_on_each_reply: bool,
    /// `failure_reply_mode`: which replies of earlier branches still take
    /// part in the selection once a failure route added new branches — 0:
    /// all; 1 and 3 (default): none; 2: all but those of the step that just failed.
    pub failure_reply_mode: i64,
    /// `noisy_ctimer`: 0 — an INVITE with one branch that never got any
    /// reply and no failure route ends silently at fr_timer (no 408).
    pub noisy_ctimer: bool,
    /// `disable_6xx_block`: 6xx replies are ordinary negative replies.
    pub disable_6xx_block: bool,
    /// `auto_inv_100`: tm answers an INVITE with 100 Trying when relaying it.
    pub auto_inv_100: bool,
    /// `cancel_b_method`: how a branch without any reply is cancelled — 0:
    /// ended at once as if it answered 487; 1 (default, RFC 3261 §9.1): it
    /// goes on and gets its CANCEL when a provisional reply arrives.
    pub cancel_b_method: i64,
}

/// tm's state: the shm table (shared by all processes) and per-process settings.
pub struct Tm {
    table: &'static HashTable<TxSlot>,
    stats: &'static [AtomicU64; STATS],
    next_id: &'static AtomicU64,
    /// Timer values.
    pub timers: Timers,
    /// Behaviour params.
    pub params: Params,
    base: Instant,
    /// The engine, to run failure/onreply/branch routes.
    pub routes: std::sync::Arc<OnceLock<Weak<dyn RouteRunner>>>,
}

/// A transaction handle: bucket hash and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxRef {
    /// Hash (bucket = hash % buckets).
    pub hash: u32,
    /// Unique id.
    pub id: u64,
}

/// Prefix of tm's branch parameters: `z9hG4bKtm.<hash>.<id>.<branch>`.
const BRANCH_PREFIX: &str = "z9hG4bKtm.";

/// Marks a branch route's message (`t_is_branch_route()`).
pub const IN_BRANCH_ROUTE: &str = "tm.in_branch_route";

/// The transaction the script is working on now (SER's global `T`), tied to
/// the message it belongs to; set by t_newtran/t_relay and while tm runs a
/// failure/onreply/branch route.
#[derive(Debug, Clone, Copy)]
pub struct Current {
    /// The transaction.
    pub tx: TxRef,
    /// Identity of the message (buffer address and length).
    pub key: (usize, usize),
    /// In a failure route: the code of the selected failed reply.
    pub fail_code: u16,
    /// In a failure route: the branch whose reply was selected.
    pub fail_branch: Option<usize>,
}

/// Script settings made before the transaction exists (t_on_*, t_set_fr).
#[derive(Debug, Clone, Default)]
pub struct Pending {
    /// t_on_failure.
    pub on_failure: Option<String>,
    /// t_on_reply.
    pub on_reply: Option<String>,
    /// t_on_branch.
    pub on_branch: Option<String>,
    /// t_set_fr: fr_inv_timer.
    pub fr_inv: Option<u32>,
    /// t_set_fr: fr_timer.
    pub fr: Option<u32>,
    /// t_set_disable_6xx.
    pub disable_6xx: Option<bool>,
    /// t_set_auto_inv_100.
    pub auto_100: Option<bool>,
}

thread_local! {
    static CURRENT: RefCell<Option<Current>> = const { RefCell::new(None) };
    static PENDING: RefCell<Option<((usize, usize), Pending)>> = const { RefCell::new(None) };
}

/// Identity of a context's message.
pub fn msg_key(ctx: &MsgCtx<'_>) -> (usize, usize) {
    (ctx.msg.buf().as_ptr() as usize, ctx.msg.buf().len())
}

/// The current transaction of this message, if any.
pub fn current(ctx: &MsgCtx<'_>) -> Option<Current> {
    let key = msg_key(ctx);
    CURRENT.with(|c| c.borrow().filter(|c| c.key == key))
}

fn set_current(c: Option<Current>) -> Option<Current> {
    CURRENT.with(|cur| std::mem::replace(&mut *cur.borrow_mut(), c))
}

/// Forget the current transaction and pending settings (a new message begins).
pub fn reset_current() {
    set_current(None);
    PENDING.with(|p| p.borrow_mut().take());
}

/// Change the pending settings of this message.
pub fn with_pending<R>(ctx: &MsgCtx<'_>, f: impl FnOnce(&mut Pending) -> R) -> R {
    let key = msg_key(ctx);
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        if p.as_ref().is_none_or(|(k, _)| *k != key) {
            *p = Some((key, Pending::default()));
        }
        match p.as_mut() {
            Some((_, pending)) => f(pending),
            None => f(&mut Pending::default()),
        }
    })
}

fn take_pending(ctx: &MsgCtx<'_>) -> Pending {
    let key = msg_key(ctx);
    PENDING.with(|p| match p.borrow_mut().take() {
        Some((k, pending)) if k == key => pending,
        _ => Pending::default(),
    })
}

/// The hash of a request or reply: Call-ID and CSeq number.
pub fn tx_hash(msg: &SipMsg) -> Option<u32> {
    let callid = msg.call_id()?;
    let cseq = msg.cseq().ok()?.number;
    Some(ser_shm::hash(&[
        callid.trim_ascii(),
        cseq.to_string().as_bytes(),
    ]))
}

/// Parse our branch parameter.
pub fn parse_branch(b: &[u8]) -> Option<(TxRef, usize)> {
    let s = std::str::from_utf8(b).ok()?.strip_prefix(BRANCH_PREFIX)?;
    let mut it = s.split('.');
    let hash = u32::from_str_radix(it.next()?, 16).ok()?;
    let id = u64::from_str_radix(it.next()?, 16).ok()?;
    let br = it.next()?.parse().ok()?;
    Some((TxRef { hash, id }, br))
}

fn branch_param(t: TxRef, b: usize) -> String {
    format!("{BRANCH_PREFIX}{:x}.{:x}.{b}", t.hash, t.id)
}

fn to_tag(t: TxRef) -> String {
    format!("tm{:x}-{:x}", t.hash, t.id)
}

/// The To-tag tm puts in its own replies of a transaction (presence keeps
/// it as the dialog's local tag).
pub fn local_to_tag(t: TxRef) -> String {
    to_tag(t)
}

/// A target of t_relay: one branch to create.
#[derive(Debug, Clone)]
pub struct Target {
    /// R-URI of the branch.
    pub uri: String,
    /// Destination URI.
    pub dst_uri: Option<String>,
    /// Branch flags.
    pub bflags: u32,
}

/// A forced destination (`t_relay(host, port)`, `t_relay_to_udp`).
#[derive(Debug, Clone)]
pub struct Override {
    /// Host (empty = from the URI).
    pub host: String,
    /// Port.
    pub port: Option<u16>,
    /// Transport.
    pub proto: Option<Proto>,
    /// `t_relay_to` flags (0x01: no automatic 100 Trying).
    pub flags: u32,
}

/// Where a branch goes: the override, else its dst-uri, else its R-URI.
pub fn branch_dest(t: &Target, over: Option<&Override>) -> Result<(SocketAddr, Proto), String> {
    branch_dests(t, over)?
        .into_iter()
        .next()
        .ok_or_else(|| "no destination".to_string())
}

/// Every RFC 3263 candidate of a branch, in order (`use_dns_failover`
/// tries the next one of the same transport when a send fails).
pub fn branch_dests(
    t: &Target,
    over: Option<&Override>,
) -> Result<Vec<(SocketAddr, Proto)>, String> {
    let uri = t.dst_uri.as_deref().unwrap_or(&t.uri);
    let u = ser_sip::parse_uri(uri.as_bytes()).map_err(|e| format!("bad URI `{uri}`: {e}"))?;
    let b = uri.as_bytes();
    let sips = u.scheme == ser_sip::Scheme::Sips;
    let mut host = String::from_utf8_lossy(u.maddr.unwrap_or(u.host).of(b)).into_owned();
    // no port (and no maddr): RFC 3263 NAPTR/SRV lookups decide
    let mut port = u.port.or(u.maddr.map(|_| if sips { 5061 } else { 5060 }));
    let mut proto = u
        .transport
        .and_then(|t| Proto::from_name(&String::from_utf8_lossy(t.of(b))));
    if let Some(o) = over {
        if !o.host.is_empty() {
            // no port given: the transport's default (or SRV) decides
            host = o.host.clone();
            port = None;
        }
        if let Some(p) = o.port {
            port = Some(p);
        }
        if let Some(p) = o.proto {
            proto = Some(p);
        }
    }
    if host.is_empty() {
        return Err(format!("no host in `{uri}`"));
    }
    let targets = crate::runtime::dns::resolve_sip(&host, port, proto, sips)?;
    if targets.is_empty() {
        return Err(format!("`{host}` has no address"));
    }
    Ok(targets.into_iter().map(|t| (t.addr, t.proto)).collect())
}

/// Build a branch request from the stored request: R-URI replaced,
/// `received`/`rport` in the sender's Via, our Via on top.
pub fn build_branch(
    req: &SipMsg,
    lumps: &Lumps,
    uri: &str,
    src: SocketAddr,
    via: &str,
) -> Result<Vec<u8>, String> {
    let mut l = lumps.clone();
    if let Some(sp) = req.ruri_span() {
        if req.s(sp) != uri.as_bytes() {
            l.replace(req, sp, uri.as_bytes());
        }
    }
    l.add_received(req, src).map_err(|e| e.to_string())?;
    l.insert_via(req, via.as_bytes());
    ser_sip::apply(req, &l).map_err(|e| e.to_string())
}

/// A hop-by-hop request for a branch (CANCEL, or ACK for a non-2xx): request
/// line and top Via of the branch's INVITE, its Route set, From, Call-ID, the
/// CSeq number, and the To of the reply (ACK) or of the INVITE (CANCEL).
pub fn build_hop(inv: &SipMsg, method: &str, reply_to: Option<&[u8]>) -> Result<Vec<u8>, String> {
    let ruri = inv.ruri().ok_or("no R-URI")?;
    let via = inv.via1().map_err(|e| e.to_string())?;
    let cseq = inv.cseq().map_err(|e| e.to_string())?.number;
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(ruri);
    out.extend_from_slice(b" SIP/2.0\r\nVia: ");
    out.extend_from_slice(inv.s(via.span));
    out.extend_from_slice(b"\r\n");
    for h in inv.headers() {
        let body = match h.name {
            HeaderName::Route | HeaderName::From | HeaderName::CallId => inv.header_body(h),
            HeaderName::To => reply_to.unwrap_or_else(|| inv.header_body(h)),
            _ => continue,
        };
        out.extend_from_slice(h.name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(
        format!("CSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
            .as_bytes(),
    );
    Ok(out)
}

/// RFC 3261 §16.7 step 7: a relayed 401/407 carries the WWW-Authenticate
/// and Proxy-Authenticate values of every 401/407 the branches received.
pub fn aggregate_challenges(best: Vec<u8>, others: &[Vec<u8>]) -> Vec<u8> {
    let Ok(msg) = SipMsg::parse(best.clone()) else {
        return best;
    };
    let mut lumps = Lumps::new();
    let mut added = 0;
    for o in others {
        let Ok(m) = SipMsg::parse(o.clone()) else {
            continue;
        };
        for h in m.headers() {
            if matches!(
                h.name,
                HeaderName::WwwAuthenticate | HeaderName::ProxyAuthenticate
            ) {
                lumps.add_header(&msg, h.name.as_str().as_bytes(), m.header_body(h));
                added += 1;
            }
        }
    }
    if added == 0 {
        return best;
    }
    ser_sip::apply(&msg, &lumps).unwrap_or(best)
}

/// Something to send once the lock is released.
struct Send {
    buf: Vec<u8>,
    dest: Dest,
}

fn send_all(env: &Env, out: Vec<Send>) {
    for s in out {
        if let Err(e) = env.transport.send(&s.buf, &s.dest) {
            log::warn!("tm: sending to {} failed: {e}", s.dest.addr);
        }
    }
}

/// What to do after a branch finished.
enum Completion {
    Nothing,
    Failure {
        route: String,
        code: u16,
        branch: usize,
    },
    Relay {
        branch: usize,
    },
}

/// Lock recovery's check of a transaction left in a bucket a dead process
/// was changing (see [`ser_shm::EntryCheck`]): every shm pointer must be a
/// live block; the request buffer is the transaction's own. Replaced fields
/// are built first and the old one dropped after it is unlinked
/// (`mem::replace`), so a death mid-update leaves the old or the new value,
/// never a freed one; a torn transaction is leaked and its call times out
/// upstream.
fn check_slot(s: &mut TxSlot) -> Option<usize> {
    let strings_ok = [&s.1, &s.2, &s.3, &s.4].iter().all(|x| x.is_intact());
    let branches_ok = s.5.is_intact()
        && s.5
            .iter()
            .all(|b| b.1.is_intact() && b.2.is_intact() && b.3.is_intact());
    (strings_ok && branches_ok).then(|| s.1.addr())
}

/// An emptied bucket gives its storage back, so a burst of calls does not
/// pin shm for ever.
fn release_empty(b: &mut ShmVec<TxSlot>) {
    if b.is_empty() && b.capacity() > 0 {
        drop(std::mem::take(b));
    }
}

fn read_tx(slot: &TxSlot) -> TxData {
    TxData::decode(&slot.0)
}

fn write_tx(slot: &mut TxSlot, t: &TxData) {
    t.encode(&mut slot.0);
}

fn read_br(b: &BranchSlot) -> BranchData {
    BranchData::decode(&b.0)
}

fn write_br(b: &mut BranchSlot, d: &BranchData) {
    d.encode(&mut b.0);
}

fn up_dest(t: &TxData) -> Dest {
    Dest {
        proto: t.proto,
        addr: t.up_dest,
        send_sock: Some(t.local),
    }
}

fn br_dest(b: &BranchData) -> Dest {
    Dest {
        proto: b.proto,
        addr: b.dest,
        send_sock: b.send_sock,
    }
}

impl Tm {
    /// Create the shm table (in main, before fork).
    pub fn new(buckets: usize, timers: Timers, params: Params) -> Result<Tm, String> {
        if !ser_shm::is_initialized() {
            return Err("shared memory is not initialised (tm needs it before module init)".into());
        }
        let e = |e: ser_shm::ShmError| e.to_string();
        let table = HashTable::new(buckets).map_err(e)?.with_check(check_slot);
        let table = ShmBox::leak(ShmBox::new(table).map_err(e)?);
        // Lock recovery: main releases a bucket lock a dead child held.
        ser_shm::register_table("tm transactions", table);
        let stats =
            ShmBox::leak(ShmBox::new(std::array::from_fn(|_| AtomicU64::new(0))).map_err(e)?);
        let next_id = ShmBox::leak(ShmBox::new(AtomicU64::new(1)).map_err(e)?);
        Ok(Tm {
            table,
            stats,
            next_id,
            timers,
            params,
            base: Instant::now(),
            routes: Default::default(),
        })
    }

    /// Milliseconds since tm was created (never 0; shared by all children,
    /// which inherit the base instant of the monotonic clock).
    pub fn now_ms(&self) -> u64 {
        self.now_at(Instant::now())
    }

    fn now_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_millis() as u64 + 1
    }

    fn bump(&self, s: Stat, by: i64) {
        let c = &self.stats[s as usize];
        if by >= 0 {
            c.fetch_add(by as u64, Ordering::Relaxed);
        } else {
            c.fetch_sub(by.unsigned_abs(), Ordering::Relaxed);
        }
    }

    /// A counter.
    pub fn stat(&self, s: Stat) -> u64 {
        self.stats[s as usize].load(Ordering::Relaxed)
    }

    /// Transactions in the table now.
    pub fn current_count(&self) -> u64 {
        self.stat(Stat::Created)
            .saturating_sub(self.stat(Stat::Freed))
    }

    /// Number of entries in the table (locks each bucket in turn).
    pub fn table_count(&self) -> usize {
        self.table.count()
    }

    fn runner(&self) -> Option<std::sync::Arc<dyn RouteRunner>> {
        self.routes.get().and_then(Weak::upgrade)
    }

    /// Run `f` on a transaction under its bucket lock.
    /// Replies noted for [`super::hooks`] are reported after the lock is released.
    fn with_tx<R>(&self, t: TxRef, f: impl FnOnce(&mut TxSlot) -> R) -> Option<R> {
        let r = {
            let mut b = self.table.bucket(t.hash);
            b.iter_mut().find(|s| s.0[0] == t.id).map(f)
        };
        super::hooks::fire();
        r
    }

    /// Find the transaction a request belongs to.
    pub fn lookup(&self, msg: &SipMsg, purpose: Purpose) -> Option<TxRef> {
        let hash = tx_hash(msg)?;
        let inc = KeyOffs::of(msg).ok()?;
        let inc = inc.view(msg.buf());
        let b = self.table.bucket(hash);
        b.iter().find_map(|s| {
            let t = read_tx(s);
            let stored = t.keys.view(s.1.as_bytes());
            matches(&stored, &inc, purpose, s.4.as_bytes()).then_some(TxRef { hash, id: t.id })
        })
    }

    /// The transaction of a Call-ID and CSeq number (tmx `t_reply_callid`);
    /// CANCEL transactions are skipped.
    pub fn find_by_callid(&self, callid: &[u8], cseq: u32) -> Option<TxRef> {
        let hash = ser_shm::hash(&[callid.trim_ascii(), cseq.to_string().as_bytes()]);
        let b = self.table.bucket(hash);
        b.iter().find_map(|s| {
            let t = read_tx(s);
            let k = t.keys.view(s.1.as_bytes());
            (k.callid == callid.trim_ascii() && k.cseq == cseq && k.method != b"CANCEL")
                .then_some(TxRef { hash, id: t.id })
        })
    }

    /// `tm.cancel`: asks for the INVITE transaction of `callid` and CSeq
    /// number `cseq` to be cancelled as if a CANCEL had arrived. The ctl
    /// process that calls this has no SIP transport, so the timer process
    /// sends the CANCELs on its next tick ([`Tm::tick`]).  Returns how many
    /// branches cannot be cancelled yet (no provisional reply: they end by
    /// timeout or get their CANCEL later, as Kamailio counts them), or `None`
    /// when there is no such transaction.
    pub fn request_cancel(&self, callid: &[u8], cseq: u32) -> Option<usize> {
        let callid = callid.trim_ascii();
        let hash = ser_shm::hash(&[callid, cseq.to_string().as_bytes()]);
        let mut b = self.table.bucket(hash);
        let s = b.iter_mut().find(|s| {
            let t = read_tx(s);
            let k = t.keys.view(s.1.as_bytes());
            t.invite && k.callid == callid && k.cseq == cseq
        })?;
        let mut d = read_tx(s);
        if d.up_code >= 200 {
            return Some(0);
        }
        d.cancel_requested = true;
        write_tx(s, &d);
        if self.params.cancel_b_method == 0 {
            return Some(0);
        }
        Some(
            s.5.iter()
                .map(read_br)
                .filter(|bd| client_pending(bd.state) && bd.state != State::Proceeding)
                .count(),
        )
    }

    /// A snapshot of a transaction's data.
    pub fn data(&self, t: TxRef) -> Option<TxData> {
        self.with_tx(t, |s| read_tx(s))
    }

    /// A snapshot of a transaction's branches.
    pub fn branches(&self, t: TxRef) -> Vec<BranchData> {
        self.with_tx(t, |s| s.5.iter().map(read_br).collect())
            .unwrap_or_default()
    }

    /// The transaction's script memory.
    pub fn meta(&self, t: TxRef) -> Option<Meta> {
        self.with_tx(t, |s| Meta::decode(s.2.as_bytes()))
    }

    /// Replace the transaction's script memory.
    pub fn set_meta(&self, t: TxRef, m: &Meta) -> bool {
        let Ok(new) = m.to_shm() else { return false };
        self.with_tx(t, |s| drop(std::mem::replace(&mut s.2, new)))
            .is_some()
    }

    /// Change a transaction's numeric data.
    pub fn update(&self, t: TxRef, f: impl FnOnce(&mut TxData)) -> bool {
        self.with_tx(t, |s| {
            let mut d = read_tx(s);
            f(&mut d);
            write_tx(s, &d);
        })
        .is_some()
    }

    /// Create the transaction of a request (t_newtran).  `Err(Ok(t))` when it
    /// already exists (a retransmission raced us), `Err(Err(why))` on failure.
    pub fn create(&self, ctx: &MsgCtx<'_>) -> Result<TxRef, Result<TxRef, String>> {
        let processed = if ctx.lumps.is_empty() {
            ctx.msg.buf().to_vec()
        } else {
            ser_sip::apply(&ctx.msg, &ctx.lumps).map_err(|e| Err(e.to_string()))?
        };
        let p = SipMsg::parse(processed)
            .map_err(|e| Err(format!("request after script edits does not parse: {e}")))?;
        let keys = KeyOffs::of(&p).map_err(|e| Err(e.0))?;
        let hash = tx_hash(&p).ok_or_else(|| Err("no Call-ID/CSeq".to_owned()))?;
        let invite = ctx.method().eq_ignore_ascii_case("INVITE");
        let pending = take_pending(ctx);
        let meta = Meta {
            on_failure: pending.on_failure.unwrap_or_default(),
            on_reply: pending.on_reply.unwrap_or_default(),
            on_branch: pending.on_branch.unwrap_or_default(),
            ruri: ctx.new_uri.clone().unwrap_or_default(),
            dst_uri: ctx.dst_uri.clone().unwrap_or_default(),
            avps: ctx.avps.export(),
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let data = TxData {
            id,
            hash,
            invite,
            state: server_initial(invite),
            keys,
            src: ctx.src,
            local: ctx.local,
            proto: ctx.proto,
            up_dest: ctx.reply_dest().addr,
            up_code: 0,
            up_local: false,
            retr_due: 0,
            retr_iv: 0,
            timeout_at: 0,
            delete_at: 0,
            flags: ctx.flags.0,
            fr: pending.fr.unwrap_or(self.timers.fr),
            fr_inv: pending.fr_inv.unwrap_or(self.timers.fr_inv),
            canceled: false,
            in_failure: false,
            cancel_requested: false,
            created: self.now_ms(),
            fail_code: 0,
            disable_6xx: pending.disable_6xx.unwrap_or(self.params.disable_6xx_block),
            no_auto_100: !pending.auto_100.unwrap_or(self.params.auto_inv_100),
        };
        let mut words = [0u64; TX_WORDS];
        data.encode(&mut words);
        let e = |e: ser_shm::ShmError| {
            ser_shm::log_oom("tm: new transaction refused", &e);
            Err(NO_SHM.to_owned())
        };
        let slot: TxSlot = (
            words,
            ShmStr::new(p.buf()).map_err(e)?,
            meta.to_shm().map_err(e)?,
            ShmStr::empty(),
            ShmStr::empty(),
            ShmVec::new(),
        );
        let t = TxRef { hash, id };
        {
            // Check and insert under one lock: a retransmission handled by
            // another process at the same time finds one transaction only.
            let mut b = self.table.bucket(hash);
            let inc = keys.view(p.buf());
            if let Some(s) = b.iter().find(|s| {
                matches(
                    &read_tx(s).keys.view(s.1.as_bytes()),
                    &inc,
                    Purpose::Retransmission,
                    b"",
                )
            }) {
                return Err(Ok(TxRef {
                    hash,
                    id: read_tx(s).id,
                }));
            }
            b.push(slot).map_err(e)?;
        }
        self.bump(Stat::Created, 1);
        set_current(Some(Current {
            tx: t,
            key: msg_key(ctx),
            fail_code: 0,
            fail_branch: None,
        }));
        Ok(t)
    }

    /// Record a reply sent upstream: state machine, stored copy for
    /// retransmissions, timers G/H and the wait timer, statistics.
    fn commit_up(&self, s: &mut TxSlot, code: u16, bytes: &[u8], local: bool, now: u64) -> bool {
        let mut t = read_tx(s);
        let next = match server_next(t.invite, t.state, ServerEvent::Send(code)) {
            Ok(n) => n,
            Err(e) => {
                log::debug!(
                    "tm: not sending {code} upstream: cannot {} in state {:?}",
                    e.what,
                    e.from
                );
                return false;
            }
        };
        if let Ok(b) = ShmStr::new(bytes) {
            drop(std::mem::replace(&mut s.3, b));
        }
        if code >= 200 {
            if let Ok(m) = SipMsg::parse(bytes.to_vec()) {
                let tag = m
                    .to()
                    .ok()
                    .and_then(|to| to.tag)
                    .map(|sp| m.s(sp).to_vec())
                    .unwrap_or_default();
                if let Ok(b) = ShmStr::new(&tag) {
                    drop(std::mem::replace(&mut s.4, b));
                }
            }
            let class = match code / 100 {
                2 => Some(Stat::Rpl2xx),
                3 => Some(Stat::Rpl3xx),
                4 => Some(Stat::Rpl4xx),
                5 => Some(Stat::Rpl5xx),
                6 => Some(Stat::Rpl6xx),
                _ => None,
            };
            if let Some(c) = class {
                self.bump(c, 1);
            }
            if local {
                self.bump(Stat::RepliedLocally, 1);
            }
            t.up_local = local;
        }
        t.state = next;
        t.up_code = code;
        if super::hooks::wanted() {
            super::hooks::note(super::hooks::ReplyOut {
                request: s.1.as_bytes().to_vec(),
                reply: bytes.to_vec(),
                code,
                flags: t.flags,
                avps: Meta::decode(s.2.as_bytes()).avp_store(),
                local,
                src: t.src,
                dst: t.local,
                script: super::hooks::script_id(&self.routes),
            });
        }
        match next {
            State::Completed if t.invite => {
                // Timer G (UDP only) until the ACK, timer H gives up.
                if t.proto == Proto::Udp {
                    t.retr_iv = self.timers.t1;
                    t.retr_due = now + u64::from(self.timers.t1);
                }
                t.timeout_at = now + u64::from(self.timers.timer_h());
            }
            State::Completed | State::Terminated => self.start_wait(&mut t, now),
            _ => {}
        }
        write_tx(s, &t);
        true
    }

    fn start_wait(&self, t: &mut TxData, now: u64) {
        if t.delete_at == 0 {
            self.bump(Stat::Waiting, 1);
        }
        t.retr_due = 0;
        t.timeout_at = 0;
        t.delete_at = now + u64::from(self.timers.wt);
    }

    /// Send a reply we generate ourselves (t_reply, 100 Trying, 408, 487)
    /// for a transaction; `extra` are header lines (append_to_reply).
    pub fn reply_local(
        &self,
        env: &Env,
        t: TxRef,
        code: u16,
        reason: &str,
        extra: &[String],
    ) -> bool {
        let Some((req, data)) = self.with_tx(t, |s| (s.1.as_bytes().to_vec(), read_tx(s))) else {
            return false;
        };
        let Ok(msg) = SipMsg::parse(req) else {
            return false;
        };
        let mut hdrs = String::new();
        for h in extra {
            hdrs.push_str(h);
            if !h.ends_with("\r\n") {
                hdrs.push_str("\r\n");
            }
        }
        hdrs.push_str(&env.server_header);
        hdrs.push_str("\r\n");
        let tag = to_tag(t);
        let buf = match ser_sip::build_reply(
            &msg,
            code,
            reason.as_bytes(),
            hdrs.as_bytes(),
            b"",
            Some(tag.as_bytes()),
            Some(data.src),
        ) {
            Ok(b) => b,
            Err(e) => {
                log::error!("tm: cannot build {code} reply: {e}");
                return false;
            }
        };
        let now = self.now_ms();
        // A final answer of ours ends the branches still waiting (CANCEL).
        let done = self.with_tx(t, |s| {
            if !self.commit_up(s, code, &buf, true, now) {
                return None;
            }
            Some(if code >= 200 && data.invite {
                self.cancel_pending(s, None)
            } else {
                Vec::new()
            })
        });
        let Some(Some(cancels)) = done else {
            return false;
        };
        send_all(
            env,
            vec![Send {
                buf,
                dest: up_dest(&data),
            }],
        );
        send_all(env, cancels);
        true
    }

    /// A retransmitted request: send the last reply again.
    pub fn resend_last_reply(&self, env: &Env, t: TxRef) {
        if let Some((buf, d)) = self.with_tx(t, |s| (s.3.as_bytes().to_vec(), read_tx(s))) {
            if !buf.is_empty() {
                send_all(
                    env,
                    vec![Send {
                        buf,
                        dest: up_dest(&d),
                    }],
                );
            }
        }
    }

    /// An ACK matched to an INVITE transaction whose final reply was negative:
    /// hop-by-hop, absorbed here (Completed → Confirmed, timer I).
    pub fn absorb_ack(&self, t: TxRef) -> bool {
        let now = self.now_ms();
        self.with_tx(t, |s| {
            let mut d = read_tx(s);
            if d.up_code < 300 {
                return false;
            }
            if let Ok(n) = server_next(true, d.state, ServerEvent::Ack) {
                if d.state == State::Completed {
                    d.state = n;
                    d.retr_due = 0;
                    // Timer I (T4 for UDP, 0 for reliable) then the wait timer.
                    let i = if d.proto == Proto::Udp {
                        u64::from(self.timers.t4)
                    } else {
                        0
                    };
                    d.timeout_at = now + i.max(1);
                }
            }
            write_tx(s, &d);
            true
        })
        .unwrap_or(false)
    }

    /// Create and send branches for `targets` on transaction `t`, built from
    /// `ctx` (the request route's message, or the failure route's rebuilt
    /// one).  Returns how many were sent.
    pub fn relay(
        &self,
        env: &Env,
        ctx: &MsgCtx<'_>,
        t: TxRef,
        targets: &[Target],
        over: Option<&Override>,
    ) -> Result<usize, String> {
        let (req, data, meta, first, last_leg) = self
            .with_tx(t, |s| {
                (
                    s.1.as_bytes().to_vec(),
                    read_tx(s),
                    Meta::decode(s.2.as_bytes()),
                    s.5.len(),
                    s.5.iter().map(|b| read_br(b).leg).max(),
                )
            })
            .ok_or("transaction gone")?;
        if data.up_code >= 200
            && !(data.invite && (200..300).contains(&data.up_code))
            && !data.in_failure
        {
            return Err("transaction already has a final reply".into());
        }
        let p = SipMsg::parse(req.clone()).map_err(|e| e.to_string())?;
        let (host, port) = ctx.advertised_addr();
        let runner = if meta.on_branch.is_empty() {
            None
        } else {
            self.runner()
        };
        // A failure route adding branches starts a new serial forking step.
        let leg = match last_leg {
            Some(l) if data.in_failure => l + 1,
            Some(l) => l,
            None => 0,
        };
        let mut built: Vec<(BranchSlot, Dest, Vec<SocketAddr>)> = Vec::new();
        for (i, target) in targets.iter().enumerate() {
            let bno = first + i;
            let mut target = target.clone();
            let mut lumps = Lumps::new();
            let mut base = None;
            if let Some(r) = &runner {
                let Ok(bmsg) = SipMsg::parse(req.clone()) else {
                    continue;
                };
                let mut bctx = MsgCtx::new(bmsg, env, data.src, data.local, data.proto);
                bctx.new_uri = Some(target.uri.clone());
                bctx.dst_uri = target.dst_uri.clone();
                bctx.flags = ctx.flags;
                bctx.bflags = Flags(target.bflags);
                bctx.avps = ctx.avps.clone();
                bctx.module_pvs.insert(
                    IN_BRANCH_ROUTE.to_owned(),
                    crate::runtime::value::Value::Int(1),
                );
                let saved = set_current(Some(Current {
                    tx: t,
                    key: msg_key(&bctx),
                    fail_code: 0,
                    fail_branch: None,
                }));
                let end = r.run_route(RouteMask::BRANCH, &meta.on_branch, &mut bctx);
                set_current(saved);
                if end == RouteEnd::Drop {
                    log::debug!("tm: branch {bno} dropped by branch_route");
                    continue;
                }
                target.uri = bctx.ruri().unwrap_or(target.uri);
                target.dst_uri = bctx.dst_uri.clone();
                target.bflags = bctx.bflags.0;
                lumps = bctx.lumps.clone();
                base = Some(bctx.msg);
            }
            let (addr, proto, alts) = match branch_dests(&target, over) {
                Ok(d) => {
                    // never empty: branch_dests errs instead
                    let (addr, proto) = d[0];
                    // the Via names the transport: failover keeps it
                    let alts: Vec<SocketAddr> = d[1..]
                        .iter()
                        .filter(|(_, p)| *p == proto)
                        .map(|(a, _)| *a)
                        .collect();
                    (addr, proto, alts)
                }
                Err(e) => {
                    log::warn!("tm: branch {bno} to {}: {e}", target.uri);
                    continue;
                }
            };
            let via = ser_sip::lump::via_value(
                proto.as_str(),
                &host,
                Some(port),
                &branch_param(t, bno),
                ctx.local_rport,
            );
            let via = String::from_utf8_lossy(&via).into_owned();
            let buf = build_branch(
                base.as_ref().unwrap_or(&p),
                &lumps,
                &target.uri,
                data.src,
                &via,
            )?;
            let send_sock = if proto == data.proto {
                Some(ctx.send_socket.unwrap_or(ctx.local))
            } else {
                ctx.send_socket
            };
            let now = self.now_ms();
            let udp = proto == Proto::Udp;
            let bd = BranchData {
                state: client_initial(data.invite),
                dest: addr,
                proto,
                send_sock,
                retr_due: if udp {
                    now + u64::from(self.timers.t1)
                } else {
                    0
                },
                retr_iv: self.timers.t1,
                fr_due: now + u64::from(data.fr),
                code: 0,
                cancel_sent: false,
                bflags: target.bflags,
                replied: false,
                timed_out: false,
                dropped: false,
                leg,
                cancel_due: 0,
                cancel_iv: 0,
                cancel_until: 0,
            };
            let mut words = [0u64; BR_WORDS];
            bd.encode(&mut words);
            let e = |e: ser_shm::ShmError| e.to_string();
            let slot = (
                words,
                ShmStr::new(&buf).map_err(e)?,
                ShmStr::empty(),
                ShmStr::new(target.uri.as_bytes()).map_err(e)?,
            );
            built.push((slot, br_dest(&bd), alts));
        }
        if built.is_empty() {
            return Err("no branch could be built".into());
        }
        let mut sends = Vec::new();
        let placed = self
            .with_tx(t, |s| {
                // Branch numbers are in the Via branches already built.
                if s.5.len() != first {
                    return false;
                }
                if data.in_failure {
                    self.drop_earlier_replies(s, leg);
                }
                for (slot, dest, alts) in built {
                    let buf = slot.1.as_bytes().to_vec();
                    if s.5.push(slot).is_err() {
                        break; // out of shm: the later branches are not sent
                    }
                    sends.push((Send { buf, dest }, alts));
                }
                true
            })
            .ok_or("transaction gone")?;
        if !placed {
            return Err("branches were added concurrently".into());
        }
        let mut ok = 0;
        let failover = crate::runtime::dns::config().failover;
        let runner = self.runner();
        for (i, (snd, alts)) in sends.iter().enumerate() {
            let allowed = ctx.onsend_allows(runner.as_deref(), &snd.buf, &snd.dest);
            let mut sent = if allowed {
                env.transport.send(&snd.buf, &snd.dest)
            } else {
                Err(std::io::Error::other("dropped by onsend_route"))
            };
            if sent.is_err() && failover && allowed {
                // use_dns_failover: the next DNS target, recorded as the
                // branch's destination for retransmissions and CANCEL
                for alt in alts {
                    let dest = Dest {
                        addr: *alt,
                        ..snd.dest
                    };
                    log::info!(
                        "tm: branch to {} failed, trying {alt} (dns failover)",
                        snd.dest.addr
                    );
                    if env.transport.send(&snd.buf, &dest).is_ok() {
                        self.with_tx(t, |s| {
                            if let Some(b) = s.5.get_mut(first + i) {
                                let mut d = read_br(b);
                                d.dest = *alt;
                                write_br(b, &d);
                            }
                        });
                        sent = Ok(());
                        break;
                    }
                }
            }
            match sent {
                Ok(()) => ok += 1,
                Err(e) => {
                    log::warn!("tm: sending branch to {} failed: {e}", snd.dest.addr);
                    self.with_tx(t, |s| {
                        if let Some(b) = s.5.get_mut(first + i) {
                            let mut d = read_br(b);
                            d.state = State::Terminated;
                            d.code = 503;
                            d.retr_due = 0;
                            d.fr_due = 0;
                            write_br(b, &d);
                        }
                    });
                }
            }
        }
        if ok == 0 {
            return Err("sending failed on every branch".into());
        }
        Ok(ok)
    }

    /// `failure_reply_mode` when a failure route starts serial forking
    /// step `leg`: the replies of earlier branches it says to forget.
    fn drop_earlier_replies(&self, s: &mut TxSlot, leg: u32) {
        let drop_leg = |l: u32| match self.params.failure_reply_mode {
            0 => false,
            2 => l + 1 == leg,
            _ => true,
        };
        for b in s.5.iter_mut() {
            let mut bd = read_br(b);
            if bd.leg < leg && drop_leg(bd.leg) && !bd.dropped {
                bd.dropped = true;
                write_br(b, &bd);
            }
        }
    }

    /// `t_drop_replies`: the replies received so far (`last_leg_only`: of
    /// the latest serial forking step) no longer take part in the selection.
    pub fn drop_replies(&self, t: TxRef, last_leg_only: bool) -> bool {
        self.with_tx(t, |s| {
            let last = s.5.iter().map(|b| read_br(b).leg).max().unwrap_or(0);
            for b in s.5.iter_mut() {
                let mut bd = read_br(b);
                if !client_pending(bd.state) && (!last_leg_only || bd.leg == last) {
                    bd.dropped = true;
                    write_br(b, &bd);
                }
            }
        })
        .is_some()
    }

    /// Put a transaction on the wait timer now (t_release).
    pub fn release(&self, t: TxRef) -> bool {
        let now = self.now_ms();
        self.with_tx(t, |s| {
            let mut d = read_tx(s);
            self.start_wait(&mut d, now);
            write_tx(s, &d);
        })
        .is_some()
    }

    /// Remove a transaction at once (a fresh one whose relay failed).
    pub fn remove(&self, t: TxRef) {
        let removed = {
            let mut b = self.table.bucket(t.hash);
            b.iter().position(|s| s.0[0] == t.id).map(|i| {
                let waiting = read_tx(&b[i]).delete_at != 0;
                drop(b.swap_remove(i));
                release_empty(&mut b);
                waiting
            })
        };
        if let Some(waiting) = removed {
            self.bump(Stat::Freed, 1);
            if waiting {
                self.bump(Stat::Waiting, -1);
            }
        }
    }

    /// A reply from downstream (tm's `reply_received`).  `false` when tm took
    /// it (relayed, absorbed or dropped); `true` when it is not ours.
    pub fn on_reply(&self, ctx: &mut MsgCtx<'_>) -> bool {
        let Some(code) = ctx.msg.status() else {
            return true;
        };
        let Some(branch) = ctx
            .msg
            .via1()
            .ok()
            .and_then(|v| v.branch)
            .map(|b| ctx.msg.s(b).to_vec())
        else {
            return true;
        };
        let Some((t, bno)) = parse_branch(&branch) else {
            return true;
        };
        let cseq_method = ctx.msg.cseq().map(|c| ctx.msg.s(c.method_span));
        if cseq_method.is_ok_and(|m| m.eq_ignore_ascii_case(b"CANCEL")) {
            // A reply to a CANCEL we sent hop-by-hop (same branch as the
            // INVITE): absorbed; a final one ends its retransmissions.
            self.with_tx(t, |s| {
                if let Some(b) = s.5.get_mut(bno) {
                    let mut bd = read_br(b);
                    if code >= 200 {
                        bd.cancel_due = 0;
                    } else if bd.cancel_due != 0 {
                        bd.cancel_iv = self.timers.retr_in_proceeding();
                    }
                    write_br(b, &bd);
                }
            });
            return false;
        }
        let Some(meta) = self.meta(t) else {
            log::debug!("tm: reply {code} for a transaction no longer here; stateless forwarding");
            return true;
        };
        // The per-transaction onreply_route first, with the transaction's
        // flags and AVPs and the flags of the branch the reply belongs to
        // (Kamailio's `isbflagset`/`$bf` there); what the route sets is kept.
        if !meta.on_reply.is_empty() {
            if let Some(r) = self.runner() {
                let flags = self.with_tx(t, |s| {
                    (read_tx(s).flags, s.5.get(bno).map(|b| read_br(b).bflags))
                });
                let Some((tflags, bflags)) = flags else {
                    return true;
                };
                ctx.flags = Flags(tflags);
                ctx.bflags = Flags(bflags.unwrap_or(0));
                ctx.avps = meta.avp_store();
                let saved = set_current(Some(Current {
                    tx: t,
                    key: msg_key(ctx),
                    fail_code: 0,
                    fail_branch: None,
                }));
                let end = r.run_route(RouteMask::ONREPLY, &meta.on_reply, ctx);
                set_current(saved);
                let (tflags, bflags) = (ctx.flags.0, ctx.bflags.0);
                self.with_tx(t, |s| {
                    let mut d = read_tx(s);
                    d.flags = tflags;
                    write_tx(s, &d);
                    if let Some(b) = s.5.get_mut(bno) {
                        let mut bd = read_br(b);
                        bd.bflags = bflags;
                        write_br(b, &bd);
                    }
                });
                if end == RouteEnd::Drop && code < 200 {
                    return false;
                }
            }
        }
        let env = ctx.env;
        let stripped = {
            let mut l = ctx.lumps.clone();
            match l.remove_first_via(&ctx.msg) {
                Ok(()) => ser_sip::apply(&ctx.msg, &l).ok(),
                Err(_) => None,
            }
        };
        let Some(stripped) = stripped else {
            log::info!("tm: reply {code} cannot be relayed (only one Via)");
            return false;
        };
        let reply_to = ctx
            .msg
            .find(HeaderName::To)
            .map(|h| ctx.msg.header_body(h).to_vec());
        let now = self.now_ms();
        let mut sends = Vec::new();
        let mut relay_now = false;
        let mut check_done = false;
        let found = self.with_tx(t, |s| {
            let d = read_tx(s);
            let Some(b) = s.5.get_mut(bno) else { return };
            let mut bd = read_br(b);
            if d.invite && (200..300).contains(&code) && bd.state == State::Terminated {
                // A retransmitted (or another) 2xx: relayed end to end again.
                relay_now = true;
                return;
            }
            let next = match client_next(d.invite, bd.state, ClientEvent::Reply(code)) {
                Ok(n) => n,
                Err(_) => return, // late or bogus: absorbed
            };
            let first_provisional = bd.state != State::Proceeding;
            let retrans = bd.state == State::Completed;
            if retrans {
                if !(d.invite && code >= 300) {
                    return;
                }
                // Retransmitted negative reply: ACK it again.
                if let Ok(inv) = SipMsg::parse(b.1.as_bytes().to_vec()) {
                    if let Ok(ack) = build_hop(&inv, "ACK", reply_to.as_deref()) {
                        sends.push(Send {
                            buf: ack,
                            dest: br_dest(&bd),
                        });
                    }
                }
                return;
            }
            bd.state = next;
            bd.code = code;
            bd.replied = true;
            if code < 200 {
                // Provisional: stop INVITE retransmissions (A), non-INVITE go on at T2 (E).
                if d.invite {
                    bd.retr_due = 0;
                    if first_provisional || self.params.restart_fr_on_each_reply {
                        bd.fr_due = now + u64::from(d.fr_inv);
                    }
                } else if bd.retr_due != 0 {
                    bd.retr_iv = self.timers.retr_in_proceeding();
                }
                write_br(b, &bd);
                relay_now = code > 100 && d.up_code < 200;
                // A CANCEL waiting for this branch's first reply goes out now
                // (the transaction was cancelled or already answered).
                if (d.canceled || d.up_code >= 200) && !bd.cancel_sent && d.invite {
                    sends.extend(self.cancel_branch(b, &mut bd, now));
                    write_br(b, &bd);
                }
                return;
            }
            bd.retr_due = 0;
            bd.fr_due = 0;
            if let Ok(r) = ShmStr::new(&stripped) {
                drop(std::mem::replace(&mut b.2, r));
            }
            if d.invite && code >= 300 {
                if let Ok(inv) = SipMsg::parse(b.1.as_bytes().to_vec()) {
                    if let Ok(ack) = build_hop(&inv, "ACK", reply_to.as_deref()) {
                        self.bump(Stat::TotalLocal, 1);
                        sends.push(Send {
                            buf: ack,
                            dest: br_dest(&bd),
                        });
                    }
                }
            }
            write_br(b, &bd);
            if (200..300).contains(&code) {
                // 2xx: relayed at once (every 2xx of an INVITE), others cancelled.
                relay_now = d.invite || d.up_code < 200;
                if d.invite {
                    sends.extend(self.cancel_pending(s, None));
                }
            } else {
                if code >= 600 && d.invite && !d.disable_6xx {
                    sends.extend(self.cancel_pending(s, None));
                }
                check_done = true;
            }
        });
        if found.is_none() {
            return true;
        }
        send_all(env, sends);
        if relay_now {
            // onsend_route may keep it off the wire; the state moves on alike
            let allowed = self.onsend_reply_allows(ctx, &stripped, t);
            let ok = self
                .with_tx(t, |s| self.commit_up(s, code, &stripped, false, now))
                .unwrap_or(false);
            if ok && allowed {
                if let Some(d) = self.data(t) {
                    send_all(
                        env,
                        vec![Send {
                            buf: stripped,
                            dest: up_dest(&d),
                        }],
                    );
                }
            }
        }
        if check_done {
            self.complete(env, t);
        }
        false
    }

    /// `onsend_route_reply=yes`: a reply about to be relayed upstream goes
    /// through `onsend_route` (on `ctx`, the reply); `false` when it dropped it.
    fn onsend_reply_allows(&self, ctx: &MsgCtx<'_>, buf: &[u8], t: TxRef) -> bool {
        let Some(r) = self.runner().filter(|r| r.onsend_replies()) else {
            return true;
        };
        let Some(d) = self.data(t) else {
            return true;
        };
        ctx.onsend_allows(Some(r.as_ref()), buf, &up_dest(&d))
    }

    /// Our CANCEL for a branch, first sending: built from the branch's
    /// INVITE, counted as a local request, and (over UDP) armed for
    /// retransmission as a non-INVITE client transaction (timers E/F).
    fn cancel_branch(&self, b: &BranchSlot, bd: &mut BranchData, now: u64) -> Option<Send> {
        bd.cancel_sent = true;
        let inv = SipMsg::parse(b.1.as_bytes().to_vec()).ok()?;
        let buf = build_hop(&inv, "CANCEL", None).ok()?;
        self.bump(Stat::TotalLocal, 1);
        if bd.proto == Proto::Udp {
            bd.cancel_iv = self.timers.t1;
            bd.cancel_due = now + u64::from(self.timers.t1);
            bd.cancel_until = now + 64 * u64::from(self.timers.t1);
        }
        Some(Send {
            buf,
            dest: br_dest(bd),
        })
    }

    /// CANCEL every pending branch of a transaction (called under its lock);
    /// a branch without any reply yet is never cancelled on the wire (RFC 3261
    /// §9.1): by `cancel_b_method` it ends at once as 487 (0) or gets its
    /// CANCEL when its first provisional arrives (1).
    fn cancel_pending(&self, s: &mut TxSlot, except: Option<usize>) -> Vec<Send> {
        let now = self.now_ms();
        let mut out = Vec::new();
        for (i, b) in s.5.iter_mut().enumerate() {
            if Some(i) == except {
                continue;
            }
            let mut bd = read_br(b);
            if !client_pending(bd.state) || bd.cancel_sent {
                continue;
            }
            if bd.state == State::Proceeding {
                out.extend(self.cancel_branch(b, &mut bd, now));
            } else if self.params.cancel_b_method == 0 {
                // No reply yet: stop retransmitting, finish the branch as 487.
                bd.state = State::Terminated;
                bd.code = 487;
                bd.retr_due = 0;
                bd.fr_due = 0;
            } else {
                // No reply yet: no CANCEL may be sent before a provisional
                // (RFC 3261 §9.1); it goes out when one arrives.
                continue;
            }
            write_br(b, &bd);
        }
        out
    }

    /// A CANCEL for transaction `t` arrived (hop-by-hop): cancel its pending
    /// branches; when they all finish, 487 goes upstream.
    pub fn cancel(&self, env: &Env, t: TxRef) {
        let sends = self
            .with_tx(t, |s| {
                let mut d = read_tx(s);
                d.canceled = true;
                write_tx(s, &d);
                if d.up_code >= 200 {
                    return Vec::new();
                }
                self.cancel_pending(s, None)
            })
            .unwrap_or_default();
        send_all(env, sends);
        self.complete(env, t);
    }

    /// After a branch finished: when none is pending and nothing final went
    /// upstream yet, run the failure route or relay the best reply.
    pub fn complete(&self, env: &Env, t: TxRef) {
        let decision = self
            .with_tx(t, |s| {
                let mut d = read_tx(s);
                if d.up_code >= 200 || d.in_failure {
                    return Completion::Nothing;
                }
                let brs: Vec<BranchData> = s.5.iter().map(read_br).collect();
                if brs.is_empty() || brs.iter().any(|b| client_pending(b.state)) {
                    return Completion::Nothing;
                }
                let final_code = |b: &BranchData| if b.code >= 200 { b.code } else { 408 };
                // Dropped replies (t_drop_replies, failure_reply_mode) are
                // out of the selection, unless nothing else is left.
                let mut codes: Vec<Option<u16>> = brs
                    .iter()
                    .map(|b| (!b.dropped).then(|| final_code(b)))
                    .collect();
                if codes.iter().all(Option::is_none) {
                    codes = brs.iter().map(|b| Some(final_code(b))).collect();
                }
                let Some(best) = pick_best(&codes) else {
                    return Completion::Nothing;
                };
                let code = codes[best].unwrap_or(408);
                let mut meta = Meta::decode(s.2.as_bytes());
                if !meta.on_failure.is_empty() && self.runner().is_some() {
                    let route = std::mem::take(&mut meta.on_failure);
                    if let Ok(m) = meta.to_shm() {
                        drop(std::mem::replace(&mut s.2, m));
                    }
                    d.in_failure = true;
                    d.fail_code = code;
                    write_tx(s, &d);
                    return Completion::Failure {
                        route,
                        code,
                        branch: best,
                    };
                }
                if !self.params.noisy_ctimer
                    && d.invite
                    && !d.canceled
                    && brs.len() == 1
                    && brs[0].timed_out
                    && !brs[0].replied
                {
                    // noisy_ctimer=0: nobody ever answered, no 408 upstream.
                    log::debug!("tm: transaction {} timed out silently", d.id);
                    self.start_wait(&mut d, self.now_ms());
                    write_tx(s, &d);
                    return Completion::Nothing;
                }
                Completion::Relay { branch: best }
            })
            .unwrap_or(Completion::Nothing);
        match decision {
            Completion::Nothing => {}
            Completion::Relay { branch } => self.relay_best(env, t, branch),
            Completion::Failure {
                route,
                code,
                branch,
            } => self.run_failure(env, t, &route, code, branch),
        }
    }

    /// Send a finished branch's reply upstream (or the local reply it stands for).
    fn relay_best(&self, env: &Env, t: TxRef, branch: usize) {
        let found = self.with_tx(t, |s| {
            let canceled = read_tx(s).canceled;
            // Challenges of the other 401/407 branches, for aggregation.
            let others: Vec<Vec<u8>> =
                s.5.iter()
                    .enumerate()
                    .filter(|(i, b)| *i != branch && matches!(read_br(b).code, 401 | 407))
                    .map(|(_, b)| b.2.as_bytes().to_vec())
                    .collect();
            s.5.get(branch)
                .map(|b| (b.2.as_bytes().to_vec(), read_br(b).code, canceled, others))
        });
        let Some(Some((mut reply, code, canceled, others))) = found else {
            return;
        };
        if matches!(code, 401 | 407) && !reply.is_empty() && !others.is_empty() {
            reply = aggregate_challenges(reply, &others);
        }
        if reply.is_empty() || relayed_code(code) != code {
            // A branch that ended locally (timeout, cancel, send error), or a 503.
            let code = if reply.is_empty() && canceled {
                487
            } else {
                relayed_code(code)
            };
            self.reply_local(env, t, code, local_reason(code), &[]);
            return;
        }
        // onsend_route_reply: onsend_route sees the reply (as received from
        // the branch) and may keep it off the wire; the state moves on alike
        let mut allowed = true;
        if self.runner().is_some_and(|r| r.onsend_replies()) {
            let parsed = SipMsg::parse(reply.clone());
            if let (Ok(msg), Some((d, src))) = (
                parsed,
                self.with_tx(t, |s| {
                    (read_tx(s), s.5.get(branch).map(|b| read_br(b).dest))
                }),
            ) {
                let rctx = MsgCtx::new(msg, env, src.unwrap_or(d.up_dest), d.local, d.proto);
                allowed = self.onsend_reply_allows(&rctx, &reply, t);
            }
        }
        let now = self.now_ms();
        if self
            .with_tx(t, |s| self.commit_up(s, code, &reply, false, now))
            .unwrap_or(false)
            && allowed
        {
            if let Some(d) = self.data(t) {
                send_all(
                    env,
                    vec![Send {
                        buf: reply,
                        dest: up_dest(&d),
                    }],
                );
            }
        }
    }

    /// Run a failure route on a context rebuilt from the shm copy of the
    /// request, with the transaction's flags and AVPs and the failed
    /// branch's flags (as Kamailio's faked request); afterwards
    /// relay the best reply unless the route forked again or replied itself.
    fn run_failure(&self, env: &Env, t: TxRef, route: &str, code: u16, branch: usize) {
        let Some((req, d, meta, failed)) = self.with_tx(t, |s| {
            (
                s.1.as_bytes().to_vec(),
                read_tx(s),
                Meta::decode(s.2.as_bytes()),
                s.5.get(branch).map(|b| read_br(b).bflags),
            )
        }) else {
            return;
        };
        if let (Some(r), Ok(msg)) = (self.runner(), SipMsg::parse(req)) {
            let mut fctx = MsgCtx::new(msg, env, d.src, d.local, d.proto);
            fctx.flags = Flags(d.flags);
            fctx.avps = meta.avp_store();
            fctx.bflags = Flags(failed.unwrap_or(0));
            fctx.new_uri = Some(meta.ruri.clone()).filter(|u| !u.is_empty());
            fctx.dst_uri = Some(meta.dst_uri.clone()).filter(|u| !u.is_empty());
            let saved = set_current(Some(Current {
                tx: t,
                key: msg_key(&fctx),
                fail_code: code,
                fail_branch: Some(branch),
            }));
            r.run_route(RouteMask::FAILURE, route, &mut fctx);
            set_current(saved);
            // Keep what the route changed for the next failure route.
            let armed = take_pending(&fctx);
            let mut m = self.meta(t).unwrap_or_default();
            m.avps = fctx.avps.export();
            if let Some(f) = armed.on_failure {
                m.on_failure = f;
            }
            self.set_meta(t, &m);
            let flags = fctx.flags.0;
            self.update(t, |d| d.flags = flags);
        }
        self.update(t, |d| d.in_failure = false);
        self.complete(env, t);
    }

    /// The timer: retransmissions (A, E, G), final-response timeouts (fr,
    /// fr_inv → 408 and CANCEL), H/I, and the wait timer that frees
    /// transactions.  Runs in the timer process every tick.
    pub fn tick(&self, env: &Env, at: Instant) {
        let now = self.now_at(at);
        let mut sends = Vec::new();
        let mut finished = Vec::new();
        let mut cancels = Vec::new();
        for bucket in self.table.buckets() {
            let mut b = bucket.lock();
            let mut i = 0;
            while i < b.len() {
                let s = &mut b[i];
                let mut d = read_tx(s);
                if d.delete_at != 0 && d.delete_at <= now {
                    // Wait timer: freed here, exactly once, under the bucket lock.
                    drop(b.swap_remove(i));
                    release_empty(&mut b);
                    self.bump(Stat::Freed, 1);
                    self.bump(Stat::Waiting, -1);
                    continue;
                }
                if d.cancel_requested {
                    d.cancel_requested = false;
                    write_tx(s, &d);
                    cancels.push(TxRef {
                        hash: d.hash,
                        id: d.id,
                    });
                }
                let mut any_done = false;
                for br in s.5.iter_mut() {
                    let mut bd = read_br(br);
                    if bd.cancel_due != 0 && bd.cancel_due <= now {
                        // Timer E of our CANCEL until its 200, timer F gives up.
                        if now >= bd.cancel_until {
                            bd.cancel_due = 0;
                        } else {
                            if let Ok(inv) = SipMsg::parse(br.1.as_bytes().to_vec()) {
                                if let Ok(c) = build_hop(&inv, "CANCEL", None) {
                                    sends.push(Send {
                                        buf: c,
                                        dest: br_dest(&bd),
                                    });
                                }
                            }
                            bd.cancel_iv = self.timers.next_retr(bd.cancel_iv, false);
                            bd.cancel_due = now + u64::from(bd.cancel_iv);
                        }
                        write_br(br, &bd);
                    }
                    if !client_pending(bd.state) {
                        continue;
                    }
                    if bd.fr_due != 0 && bd.fr_due <= now {
                        // fr_timer / fr_inv_timer: the branch ends with a local 408;
                        // an INVITE branch that had a provisional is cancelled
                        // (without one, RFC 3261 §9.1 forbids a CANCEL).
                        if bd.state == State::Proceeding && d.invite && !bd.cancel_sent {
                            sends.extend(self.cancel_branch(br, &mut bd, now));
                        }
                        // not even a provisional to an INVITE: the destination
                        // is down (Kamailio's BLST_ERR_TIMEOUT)
                        if d.invite && !d.canceled && bd.state != State::Proceeding {
                            crate::runtime::dns::blacklist::note_timeout(bd.proto, bd.dest);
                        }
                        bd.state = client_next(d.invite, bd.state, ClientEvent::Timeout)
                            .unwrap_or(State::Terminated);
                        bd.code = if d.canceled { 487 } else { 408 };
                        bd.timed_out = true;
                        bd.retr_due = 0;
                        bd.fr_due = 0;
                        write_br(br, &bd);
                        any_done = true;
                        continue;
                    }
                    if bd.retr_due != 0 && bd.retr_due <= now {
                        sends.push(Send {
                            buf: br.1.as_bytes().to_vec(),
                            dest: br_dest(&bd),
                        });
                        bd.retr_iv = self.timers.next_retr(bd.retr_iv, d.invite);
                        bd.retr_due = now + u64::from(bd.retr_iv);
                        write_br(br, &bd);
                    }
                }
                // A transaction the script created (t_newtran) but neither
                // relayed nor answered: dropped once its longest timer passed.
                let longest = u64::from(d.fr.max(d.fr_inv));
                if s.5.is_empty()
                    && d.up_code < 200
                    && d.delete_at == 0
                    && now > d.created + longest
                {
                    log::info!(
                        "tm: transaction {} never relayed nor answered; dropped",
                        d.id
                    );
                    self.start_wait(&mut d, now);
                    write_tx(s, &d);
                }
                // Server side: timer G (our final reply again), H / I.
                if d.retr_due != 0 && d.retr_due <= now && d.state == State::Completed {
                    sends.push(Send {
                        buf: s.3.as_bytes().to_vec(),
                        dest: up_dest(&d),
                    });
                    d.retr_iv = self.timers.next_retr(d.retr_iv, false);
                    d.retr_due = now + u64::from(d.retr_iv);
                    write_tx(s, &d);
                }
                if d.timeout_at != 0 && d.timeout_at <= now {
                    d.state = server_next(d.invite, d.state, ServerEvent::Timeout)
                        .unwrap_or(State::Terminated);
                    self.start_wait(&mut d, now);
                    write_tx(s, &d);
                }
                if any_done {
                    finished.push(TxRef {
                        hash: d.hash,
                        id: d.id,
                    });
                }
                i += 1;
            }
        }
        send_all(env, sends);
        for t in cancels {
            self.cancel(env, t);
        }
        for t in finished {
            self.complete(env, t);
        }
    }

    /// One line per transaction (tm.list): id, method, state, code, branches.
    pub fn list(&self) -> Vec<(u64, String, State, u16, usize, String)> {
        let mut out = Vec::new();
        for bucket in self.table.buckets() {
            let b = bucket.lock();
            for s in b.iter() {
                let d = read_tx(s);
                let buf = s.1.as_bytes();
                out.push((
                    d.id,
                    String::from_utf8_lossy(d.keys.method.get(buf)).into_owned(),
                    d.state,
                    d.up_code,
                    s.5.len(),
                    String::from_utf8_lossy(d.keys.callid.get(buf)).into_owned(),
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_param_round_trip() {
        let t = TxRef {
            hash: 0xdead_beef,
            id: 42,
        };
        let p = branch_param(t, 3);
        assert!(p.starts_with("z9hG4bK"));
        assert_eq!(parse_branch(p.as_bytes()), Some((t, 3)));
        assert_eq!(parse_branch(b"z9hG4bKother"), None);
        assert_eq!(parse_branch(b"z9hG4bKtm.zz.1.0"), None);
    }

    #[test]
    fn challenges_aggregated() {
        let r = |realm: &str, code: &str| {
            format!(
                "SIP/2.0 {code} Unauthorized\r\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKa\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nWWW-Authenticate: Digest realm=\"{realm}\", nonce=\"n\"\r\nContent-Length: 0\r\n\r\n"
            )
            .into_bytes()
        };
        let out = aggregate_challenges(r("a", "401"), &[r("b", "401")]);
        let m = SipMsg::parse(out).unwrap();
        let realms: Vec<String> = m
            .find_all(HeaderName::WwwAuthenticate)
            .map(|h| String::from_utf8_lossy(m.header_body(h)).into_owned())
            .collect();
        assert_eq!(realms.len(), 2, "{realms:?}");
        assert!(realms[1].contains("realm=\"b\""));
        let same = aggregate_challenges(r("a", "401"), &[b"garbage".to_vec()]);
        assert_eq!(same, r("a", "401"));
    }

    #[test]
    fn hop_requests() {
        let inv = SipMsg::parse(
            b"INVITE sip:bob@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKtm.1.2.0\r\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKa\r\nRoute: <sip:10.0.0.3;lr>\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:bob@x>\r\nCall-ID: c1\r\nCSeq: 5 INVITE\r\nContent-Length: 0\r\n\r\n".to_vec(),
        )
        .unwrap();
        let c = SipMsg::parse(build_hop(&inv, "CANCEL", None).unwrap()).unwrap();
        assert_eq!(c.method_bytes(), b"CANCEL");
        assert_eq!(c.vias().count(), 1);
        assert_eq!(c.cseq().unwrap().number, 5);
        assert!(c.find(HeaderName::Route).is_some());
        let a =
            SipMsg::parse(build_hop(&inv, "ACK", Some(b"<sip:bob@x>;tag=99")).unwrap()).unwrap();
        assert_eq!(
            a.to().unwrap().tag.map(|t| a.s(t).to_vec()),
            Some(b"99".to_vec())
        );
        assert_eq!(
            a.via1().unwrap().branch.map(|b| a.s(b).to_vec()),
            Some(b"z9hG4bKtm.1.2.0".to_vec())
        );
    }
}
