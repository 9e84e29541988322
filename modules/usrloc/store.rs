//! The in-memory location table: a shm hash table per domain (`location`,
//! or any table name `save("x")` uses), keyed by AOR, each AOR a list of
//! contact records.  Replaces usrloc's `udomain.c`, `urecord.c`,
//! `ucontact.c` (memory part).
//!
//! A contact record is kept small: every string field is packed into one
//! shm block (u16 length + bytes each), the numbers sit beside it.  Callers
//! work on a decoded private copy ([`Ucontact`]) and write the whole list
//! back under the bucket lock ([`Table::update`]).
//!
//! Measured (`bytes_per_contact` test, allocator overhead included): a
//! further contact of an AOR costs ~230 bytes of shm (56-byte record +
//! one block for a typical 148 bytes of strings); an AOR with one contact
//! ~610 bytes while buckets are nearly empty (bucket vector spare capacity
//! and the AOR's own blocks), less as buckets fill.

use ser_shm::{hash, HashTable, ShmStr, ShmVec};

/// One contact record in shm: packed strings, expires, last_modified,
/// (cseq, flags, cflags, methods), (q in thousandths or -1, reg_id).
pub type Rec = (ShmStr, u64, u64, (u32, u32, u32, u32), (i32, u32));

/// One AOR in shm: the AOR, its contacts, and "changed since the last
/// DB flush" (write-back mode).
pub type AorRec = (ShmStr, ShmVec<Rec>, u32);

/// Number of buckets of a location table (Kamailio `hash_size` 10 → 1024).
pub const BUCKETS: usize = 1024;

/// `methods` value meaning "all methods" (no Allow header seen).
pub const ALL_METHODS: u32 = u32::MAX;

/// A contact as callers see it (private memory).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ucontact {
    /// Contact URI.
    pub uri: String,
    /// Call-ID of the REGISTER.
    pub callid: String,
    /// Path header value(s) (comma-joined).
    pub path: String,
    /// `received` (NAT source, `sip:ip:port`).
    pub received: String,
    /// User-Agent.
    pub user_agent: String,
    /// Our socket it registered through (`udp:ip:port`).
    pub socket: String,
    /// `+sip.instance`.
    pub instance: String,
    /// Unique record id (Kamailio `ruid`).
    pub ruid: String,
    /// Absolute expiry (Unix seconds); 0 = permanent.
    pub expires: u64,
    /// Last update (Unix seconds).
    pub last_modified: u64,
    /// CSeq number of the REGISTER.
    pub cseq: u32,
    /// Internal flags.
    pub flags: u32,
    /// Branch flags to restore on lookup (`nat_bflag`...).
    pub cflags: u32,
    /// Allowed methods bitmask ([`ALL_METHODS`] if unknown).
    pub methods: u32,
    /// q in thousandths; -1 if not given.
    pub q: i32,
    /// `reg-id` (RFC 5626).
    pub reg_id: u32,
}

impl Ucontact {
    /// Whether it has expired at `now` (permanent contacts never do).
    pub fn expired(&self, now: u64) -> bool {
        self.expires != 0 && self.expires <= now
    }

    /// Seconds left at `now`.
    pub fn remaining(&self, now: u64) -> u64 {
        if self.expires == 0 {
            0
        } else {
            self.expires.saturating_sub(now)
        }
    }

    fn strings(&self) -> [&str; 8] {
        [
            &self.uri,
            &self.callid,
            &self.path,
            &self.received,
            &self.user_agent,
            &self.socket,
            &self.instance,
            &self.ruid,
        ]
    }

    /// Copy into shm.
    pub fn to_rec(&self) -> Result<Rec, ser_shm::ShmError> {
        let mut packed =
            Vec::with_capacity(self.strings().iter().map(|s| s.len().min(0xffff) + 2).sum());
        for s in self.strings() {
            // Longer fields are cut (usrloc columns are at most 512 bytes anyway).
            let b = &s.as_bytes()[..s.len().min(0xffff)];
            packed.extend_from_slice(&(b.len() as u16).to_le_bytes());
            packed.extend_from_slice(b);
        }
        Ok((
            ShmStr::new(&packed)?,
            self.expires,
            self.last_modified,
            (self.cseq, self.flags, self.cflags, self.methods),
            (self.q, self.reg_id),
        ))
    }

    /// Copy out of shm.
    pub fn from_rec(r: &Rec) -> Ucontact {
        let mut fields: [String; 8] = Default::default();
        let b = r.0.as_bytes();
        let mut pos = 0;
        for f in fields.iter_mut() {
            if pos + 2 > b.len() {
                break;
            }
            let n = usize::from(u16::from_le_bytes([b[pos], b[pos + 1]]));
            let end = (pos + 2 + n).min(b.len());
            *f = String::from_utf8_lossy(&b[pos + 2..end]).into_owned();
            pos = end;
        }
        let [uri, callid, path, received, user_agent, socket, instance, ruid] = fields;
        Ucontact {
            uri,
            callid,
            path,
            received,
            user_agent,
            socket,
            instance,
            ruid,
            expires: r.1,
            last_modified: r.2,
            cseq: r.3 .0,
            flags: r.3 .1,
            cflags: r.3 .2,
            methods: r.3 .3,
            q: r.4 .0,
            reg_id: r.4 .1,
        }
    }
}

/// Lock recovery's check of an AOR left in a bucket a dead process was
/// changing (see [`ser_shm::EntryCheck`]): the AOR and its contact list must
/// be live shm blocks; torn or duplicated contacts are dropped from the list
/// without being freed.
fn check_aor(r: &mut AorRec) -> Option<usize> {
    if !r.0.is_intact() || r.0.is_empty() || !r.1.is_intact() {
        return None;
    }
    let mut seen = Vec::with_capacity(r.1.len());
    r.1.retain_leaking(|c| {
        let a = c.0.addr();
        let ok = c.0.is_intact() && !seen.contains(&a);
        seen.push(a);
        ok
    });
    Some(r.0.addr())
}

/// Debug builds only: `SER_TEST_HOLD_USRLOC_LOCK=<aor>:<marker file>` makes
/// the first process (server-wide: whoever creates the marker file) that
/// updates an AOR containing `<aor>` sleep 60 s holding its bucket lock, so
/// a test can kill a worker that holds a usrloc lock.
#[cfg(debug_assertions)]
mod test_hook {
    pub fn maybe_hold(aor: &str) {
        let Ok(v) = std::env::var("SER_TEST_HOLD_USRLOC_LOCK") else {
            return;
        };
        let Some((want, marker)) = v.split_once(':') else {
            return;
        };
        if want.is_empty() || !aor.contains(want) {
            return;
        }
        if std::fs::File::create_new(marker).is_ok() {
            log::warn!(
                "pid {}: holding the usrloc bucket lock of {aor} until killed",
                std::process::id()
            );
            std::thread::sleep(std::time::Duration::from_secs(60));
        }
    }
}

/// Bytes one contact costs in shm besides its strings: the record itself.
pub const REC_SIZE: usize = std::mem::size_of::<Rec>();

// Keep the per-contact record small (56 bytes on 64-bit targets).
const _: () = assert!(REC_SIZE <= 64);

/// A location table in shm.
pub struct Table {
    ht: &'static HashTable<AorRec>,
}

/// What an update did to the stored AOR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    /// Nothing written.
    No,
    /// Contacts written back.
    Yes,
}

impl Table {
    /// A new table in shm (main process, before fork).
    pub fn create() -> Result<Table, ser_shm::ShmError> {
        let ht = HashTable::new(BUCKETS)?.with_check(check_aor);
        let ht = ser_shm::ShmBox::leak(ser_shm::ShmBox::new(ht)?);
        // Lock recovery: main releases a bucket lock a dead child held.
        ser_shm::register_table("usrloc", ht);
        Ok(Table { ht })
    }

    /// The raw table (shared by every handle of the same name).
    pub fn raw(&self) -> &'static HashTable<AorRec> {
        self.ht
    }

    /// A handle on an existing table.
    pub fn from_raw(ht: &'static HashTable<AorRec>) -> Table {
        Table { ht }
    }

    /// The AOR's contacts (expired ones included; callers filter).
    pub fn get(&self, aor: &str) -> Vec<Ucontact> {
        let b = self.ht.bucket(hash(&[aor.as_bytes()]));
        b.iter()
            .find(|r| r.0 == *aor)
            .map(|r| r.1.iter().map(Ucontact::from_rec).collect())
            .unwrap_or_default()
    }

    /// Run `f` on the AOR's contacts under the bucket lock and store the
    /// result if `f` says it changed them.  The new list is copied into shm
    /// before the old one is dropped, so running out of shm keeps the old.
    /// `keep_empty` keeps an AOR with no contacts (write-back mode: the
    /// deletion is still to be flushed).
    pub fn update<R>(
        &self,
        aor: &str,
        keep_empty: bool,
        f: impl FnOnce(&mut Vec<Ucontact>) -> (Changed, R),
    ) -> Result<R, ser_shm::ShmError> {
        // What the update unlinks is dropped after the bucket is unlocked
        // (declared first, dropped last): a death while freeing it only
        // leaks, the table already holds the new list.
        let retired: (Option<ShmVec<Rec>>, Option<AorRec>);
        let mut b = self.ht.bucket(hash(&[aor.as_bytes()]));
        #[cfg(debug_assertions)]
        test_hook::maybe_hold(aor);
        let idx = b.iter().position(|r| r.0 == *aor);
        let mut list: Vec<Ucontact> = idx
            .map(|i| b[i].1.iter().map(Ucontact::from_rec).collect())
            .unwrap_or_default();
        let (changed, out) = f(&mut list);
        if changed == Changed::No {
            return Ok(out);
        }
        let mut recs = ShmVec::with_capacity(list.len())?;
        for c in &list {
            recs.push(c.to_rec()?)?;
        }
        retired = match idx {
            Some(i) if list.is_empty() && !keep_empty => (None, Some(b.swap_remove(i))),
            Some(i) => {
                let old = std::mem::replace(&mut b[i].1, recs);
                b[i].2 = 1;
                (Some(old), None)
            }
            None if list.is_empty() && !keep_empty => (None, None),
            None => {
                b.push((ShmStr::new(aor.as_bytes())?, recs, 1))?;
                (None, None)
            }
        };
        drop(b);
        drop(retired);
        Ok(out)
    }

    /// Remove expired contacts everywhere; returns the AORs that changed.
    /// Only the numeric expiry is read: no string is decoded.
    pub fn expire(&self, now: u64, keep_empty: bool) -> Vec<String> {
        let mut changed = Vec::new();
        for m in self.ht.buckets() {
            let mut b = m.lock();
            let mut i = 0;
            while i < b.len() {
                let before = b[i].1.len();
                b[i].1.retain(|r| r.1 == 0 || r.1 > now);
                if b[i].1.len() != before {
                    changed.push(b[i].0.to_string());
                    b[i].2 = 1;
                }
                if b[i].1.is_empty() && !keep_empty {
                    b.swap_remove(i);
                } else {
                    i += 1;
                }
            }
        }
        changed
    }

    /// AORs marked changed since the last flush, with their contacts; the
    /// marks are cleared and AORs left empty are removed.
    pub fn take_dirty(&self) -> Vec<(String, Vec<Ucontact>)> {
        let mut out = Vec::new();
        for m in self.ht.buckets() {
            let mut b = m.lock();
            let mut i = 0;
            while i < b.len() {
                if b[i].2 != 0 {
                    b[i].2 = 0;
                    out.push((
                        b[i].0.to_string(),
                        b[i].1.iter().map(Ucontact::from_rec).collect(),
                    ));
                }
                if b[i].1.is_empty() {
                    b.swap_remove(i);
                } else {
                    i += 1;
                }
            }
        }
        out
    }

    /// Mark every AOR in `aors` changed (a failed flush retries them).
    pub fn mark_dirty(&self, aors: &[String]) {
        for aor in aors {
            let mut b = self.ht.bucket(hash(&[aor.as_bytes()]));
            if let Some(r) = b.iter_mut().find(|r| r.0 == **aor) {
                r.2 = 1;
            }
        }
    }

    /// Every AOR with its contacts (for `ul.dump`).
    pub fn dump(&self) -> Vec<(String, Vec<Ucontact>)> {
        let mut out = Vec::new();
        for m in self.ht.buckets() {
            let b = m.lock();
            for r in b.iter().filter(|r| !r.1.is_empty()) {
                out.push((
                    r.0.to_string(),
                    r.1.iter().map(Ucontact::from_rec).collect(),
                ));
            }
        }
        out
    }

    /// Number of AORs and of contacts.
    pub fn counts(&self) -> (usize, usize) {
        let mut aors = 0;
        let mut contacts = 0;
        for m in self.ht.buckets() {
            let b = m.lock();
            for r in b.iter().filter(|r| !r.1.is_empty()) {
                aors += 1;
                contacts += r.1.len();
            }
        }
        (aors, contacts)
    }
}

#[cfg(test)]
pub(crate) fn shm_for_tests() {
    // One segment per test binary; tests share it.
    let _ = ser_shm::init_once(64 << 20);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(uri: &str, expires: u64) -> Ucontact {
        Ucontact {
            uri: uri.into(),
            callid: "cid".into(),
            expires,
            q: -1,
            methods: ALL_METHODS,
            ..Default::default()
        }
    }

    #[test]
    fn record_round_trip() {
        shm_for_tests();
        let mut u = c("sip:a@1.2.3.4:5060", 100);
        u.path = "<sip:p1>".into();
        u.user_agent = "phone/1.0".into();
        u.q = 500;
        u.cseq = 7;
        u.reg_id = 2;
        let r = u.to_rec().unwrap();
        assert_eq!(Ucontact::from_rec(&r), u);
    }

    #[test]
    fn insert_update_expire_remove() {
        shm_for_tests();
        let t = Table::create().unwrap();
        t.update("alice", false, |l| {
            l.push(c("sip:a@1", 100));
            l.push(c("sip:a@2", 200));
            (Changed::Yes, ())
        })
        .unwrap();
        assert_eq!(t.get("alice").len(), 2);
        assert_eq!(t.counts(), (1, 2));
        // update in place
        t.update("alice", false, |l| {
            l[0].expires = 300;
            (Changed::Yes, ())
        })
        .unwrap();
        assert_eq!(t.get("alice")[0].expires, 300);
        // expiry removes only the expired one
        assert_eq!(t.expire(250, false), vec!["alice".to_string()]);
        assert_eq!(
            t.get("alice")
                .iter()
                .map(|c| c.uri.as_str())
                .collect::<Vec<_>>(),
            vec!["sip:a@1"]
        );
        // removing the last contact removes the AOR
        t.update("alice", false, |l| {
            l.clear();
            (Changed::Yes, ())
        })
        .unwrap();
        assert!(t.get("alice").is_empty());
        assert_eq!(t.counts(), (0, 0));
        assert!(t.dump().is_empty());
    }

    #[test]
    fn write_back_keeps_deleted_aors_until_flushed() {
        shm_for_tests();
        let t = Table::create().unwrap();
        t.update("bob", true, |l| {
            l.push(c("sip:b@1", 10));
            (Changed::Yes, ())
        })
        .unwrap();
        assert_eq!(t.take_dirty().len(), 1);
        assert!(t.take_dirty().is_empty());
        t.expire(20, true);
        let d = t.take_dirty();
        assert_eq!(d, vec![("bob".to_string(), vec![])]);
        assert!(t.take_dirty().is_empty());
    }

    #[test]
    fn bytes_per_contact() {
        shm_for_tests();
        // A typical contact: 40-byte URI, 36-byte Call-ID, 20-byte UA, socket, ruid.
        let mut u = c(
            &format!("sip:user0001@192.168.100.{}:5060;transport=udp", 1),
            3600,
        );
        u.callid = "a84b4c76e66710-0001@pc33.example.com".into();
        u.user_agent = "sipp/3.6 (ser bench)".into();
        u.socket = "udp:127.0.0.1:5060".into();
        u.ruid = "uloc-5f3a-1-1".into();
        let strings: usize = u.strings().iter().map(|s| s.len() + 2).sum();
        // Whole cost in the segment, allocator overhead included: 1000 AORs
        // with one contact each (exact only when this test runs alone).
        let t = Table::create().unwrap();
        let before = ser_shm::stats().real_used;
        for i in 0..1000 {
            let aor = format!("user{i:04}");
            t.update(&aor, false, |l| {
                l.push(u.clone());
                (Changed::Yes, ())
            })
            .unwrap();
        }
        let per = (ser_shm::stats().real_used.saturating_sub(before)) / 1000;
        // 100 more contacts on one AOR: the marginal cost of a contact.
        let before = ser_shm::stats().real_used;
        t.update("user0000", false, |l| {
            for i in 0..100 {
                let mut c = u.clone();
                c.uri = format!("sip:user0000@192.168.1.{i}:5060;transport=udp");
                l.push(c);
            }
            (Changed::Yes, ())
        })
        .unwrap();
        let marginal = (ser_shm::stats().real_used.saturating_sub(before)) / 100;
        eprintln!(
            "usrloc: {REC_SIZE} bytes record + {strings} bytes packed strings; \
             {per} bytes of shm per single-contact AOR, {marginal} per further contact"
        );
    }
}
