//! Nonces (replaces `modules/auth/nonce.c` and the nonce-count part of
//! `nc.c`): `hex(expires) hex(nid) hex(H(expires:nid:secret))`.  The
//! signature makes a nonce unforgeable; `expires` bounds its life; `nid`
//! indexes a shm array holding the highest nonce-count seen, so a replayed
//! `nc` is refused and the client is challenged again with `stale=true`.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::auth::digest::{hex_eq, Alg};

/// Slots of the nonce-count array (a nonce whose slot was reused by a newer
/// one counts as stale).
pub const NC_SLOTS: usize = 1 << 16;

/// Why a nonce was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceError {
    /// Not one of ours (bad format or signature).
    Invalid,
    /// Ours, but expired.
    Expired,
    /// Ours, but this nonce-count was seen already (or its slot was reused).
    Reused,
}

/// Nonce generation settings (auth modparams).
#[derive(Debug, Clone)]
pub struct NonceCfg {
    /// Signing secret.
    pub secret: Vec<u8>,
    /// Life of a nonce, seconds.
    pub expire: u64,
}

struct NcTable {
    slots: &'static [AtomicU64],
    next: &'static AtomicU32,
}

// Allocated once in shm (main, before fork), shared by every process.
static NC: OnceLock<Option<NcTable>> = OnceLock::new();
// The settings of the loaded config (auth init; auth_db may run without it).
static CFG: Mutex<Option<Arc<NonceCfg>>> = Mutex::new(None);

fn nc_table() -> Option<&'static NcTable> {
    NC.get_or_init(|| {
        let slots = ser_shm::ShmSlice::from_fn(NC_SLOTS, |_| AtomicU64::new(0)).ok()?;
        let next = ser_shm::ShmBox::new(AtomicU32::new(1)).ok()?;
        Some(NcTable {
            slots: ser_shm::ShmSlice::leak(slots),
            next: ser_shm::ShmBox::leak(next),
        })
    })
    .as_ref()
}

/// Sets the nonce settings and allocates the shm nonce-count array
/// (call in main before fork).
pub fn init(cfg: NonceCfg) -> Result<(), String> {
    if nc_table().is_none() {
        return Err("cannot allocate the nonce-count table in shared memory".into());
    }
    *CFG.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(cfg));
    Ok(())
}

/// The current settings (a random secret and 30 s if auth never initialised).
pub fn cfg() -> Arc<NonceCfg> {
    let mut g = CFG.lock().unwrap_or_else(|p| p.into_inner());
    g.get_or_insert_with(|| {
        Arc::new(NonceCfg {
            secret: random_secret(),
            expire: 30,
        })
    })
    .clone()
}

/// 16 random bytes from the kernel (time and pid if that fails).
pub fn random_secret() -> Vec<u8> {
    use std::io::Read;
    let mut b = vec![0u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_err()
    {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        b = format!("{t:x}{}", std::process::id()).into_bytes();
    }
    b
}

fn sign(cfg: &NonceCfg, head: &str) -> String {
    Alg::Md5.h(&[head.as_bytes(), &cfg.secret])
}

/// A fresh nonce valid `cfg.expire` seconds from `now`.
pub fn generate(cfg: &NonceCfg, now: u64) -> String {
    let nid = match nc_table() {
        Some(t) => {
            let nid = t.next.fetch_add(1, Ordering::Relaxed);
            t.slots[nid as usize % NC_SLOTS].store(u64::from(nid) << 32, Ordering::Relaxed);
            nid
        }
        None => 0,
    };
    let head = format!("{:08x}{nid:08x}", (now + cfg.expire) as u32);
    let sig = sign(cfg, &head);
    format!("{head}{sig}")
}

/// Check a nonce (and its nonce-count when the client used qop).
pub fn check(cfg: &NonceCfg, nonce: &str, nc: Option<&str>, now: u64) -> Result<(), NonceError> {
    if nonce.len() != 48 || !nonce.is_ascii() {
        return Err(NonceError::Invalid);
    }
    let (head, sig) = nonce.split_at(16);
    if !hex_eq(sig, &sign(cfg, head)) {
        return Err(NonceError::Invalid);
    }
    let expires = u32::from_str_radix(&head[..8], 16).map_err(|_| NonceError::Invalid)?;
    let nid = u32::from_str_radix(&head[8..], 16).map_err(|_| NonceError::Invalid)?;
    if u64::from(expires) <= now {
        return Err(NonceError::Expired);
    }
    let Some(nc) = nc else { return Ok(()) };
    let nc = u32::from_str_radix(nc.trim(), 16).map_err(|_| NonceError::Invalid)?;
    let Some(t) = nc_table() else { return Ok(()) };
    let slot = &t.slots[nid as usize % NC_SLOTS];
    let mut cur = slot.load(Ordering::Relaxed);
    loop {
        if (cur >> 32) as u32 != nid {
            return Err(NonceError::Reused);
        }
        if nc <= cur as u32 {
            return Err(NonceError::Reused);
        }
        let new = (u64::from(nid) << 32) | u64::from(nc);
        match slot.compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return Ok(()),
            Err(c) => cur = c,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> NonceCfg {
        let _ = ser_shm::init_once(64 << 20);
        NonceCfg {
            secret: b"s3cret".to_vec(),
            expire: 30,
        }
    }

    #[test]
    fn valid_until_expiry() {
        let c = cfg();
        let n = generate(&c, 1000);
        assert_eq!(check(&c, &n, None, 1000), Ok(()));
        assert_eq!(check(&c, &n, None, 1029), Ok(()));
        assert_eq!(check(&c, &n, None, 1030), Err(NonceError::Expired));
    }

    #[test]
    fn forged_or_foreign_nonces_are_invalid() {
        let c = cfg();
        let n = generate(&c, 1000);
        let other = NonceCfg {
            secret: b"other".to_vec(),
            expire: 30,
        };
        assert_eq!(check(&other, &n, None, 1000), Err(NonceError::Invalid));
        let mut forged = n.clone();
        forged.replace_range(0..8, "ffffffff");
        assert_eq!(check(&c, &forged, None, 1000), Err(NonceError::Invalid));
        assert_eq!(check(&c, "short", None, 1000), Err(NonceError::Invalid));
    }

    #[test]
    fn nonce_count_replay_is_refused() {
        let c = cfg();
        let n = generate(&c, 1000);
        assert_eq!(check(&c, &n, Some("00000001"), 1000), Ok(()));
        assert_eq!(
            check(&c, &n, Some("00000001"), 1000),
            Err(NonceError::Reused)
        );
        assert_eq!(check(&c, &n, Some("00000002"), 1000), Ok(()));
        assert_eq!(check(&c, &n, Some("zz"), 1000), Err(NonceError::Invalid));
    }
}
