//! The process table, in memory shared by every process (SER's `pt.c`).
//!
//! One slot per planned process: the description and rank are written by main
//! before the first fork and never change; the pid is written by main after
//! each fork (and cleared when the child dies, so a respawn can reuse the
//! slot). Any process can read the table, e.g. for `core.ps`/`core.psx`.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

use ser_shm::{ShmSafe, ShmSlice};

use crate::plan::SpawnPlan;
use crate::Error;

/// Longest description kept; longer ones are cut.
pub const MAX_DESC: usize = 96;

/// One slot, laid out for shared memory: no pointers, fixed size.
#[repr(C)]
struct ProcSlot {
    pid: AtomicI32,
    rank: i32,
    desc_len: u32,
    desc: [u8; MAX_DESC],
}

// SAFETY: integers, an atomic and a byte array: no pointers, no Drop,
// alignment 4.
unsafe impl ShmSafe for ProcSlot {}

/// A snapshot of one table entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    /// Index in the plan (0 = main).
    pub index: usize,
    /// Current pid, 0 when not running.
    pub pid: i32,
    /// SER rank value.
    pub rank: i32,
    /// Description (`udp receiver child=0 sock=127.0.0.1:5060`).
    pub desc: String,
}

static TABLE: OnceLock<&'static [ProcSlot]> = OnceLock::new();

/// Creates the table for `plan` in the shm segment ([`ser_shm::init`] must
/// have run). Called once, in main, before the first fork.
pub fn create(plan: &SpawnPlan) -> Result<(), Error> {
    let slots = ShmSlice::from_fn(plan.len(), |i| {
        let bytes = plan.procs[i].desc.as_bytes();
        let len = bytes.len().min(MAX_DESC);
        let mut desc = [0u8; MAX_DESC];
        desc[..len].copy_from_slice(&bytes[..len]);
        ProcSlot {
            pid: AtomicI32::new(0),
            rank: plan.procs[i].rank.as_i32(),
            // len <= MAX_DESC, fits in u32.
            desc_len: len as u32,
            desc,
        }
    })
    .map_err(|e| Error::Shm { msg: e.to_string() })?;
    // The table lives as long as the server: every child reads it.
    let slots: &'static [ProcSlot] = ShmSlice::leak(slots);
    TABLE.set(slots).map_err(|_| Error::Shm {
        msg: "process table created twice".into(),
    })
}

/// Records `pid` for slot `index` (0 clears it).
pub fn set_pid(index: usize, pid: i32) {
    if let Some(slot) = TABLE.get().and_then(|t| t.get(index)) {
        slot.pid.store(pid, Ordering::Release);
    }
}

/// Finds the slot of a running `pid`.
pub fn index_of(pid: i32) -> Option<usize> {
    let t = TABLE.get()?;
    t.iter().position(|s| s.pid.load(Ordering::Acquire) == pid)
}

/// Every entry of the table (empty before [`create`]).
pub fn process_table() -> impl Iterator<Item = ProcInfo> {
    let slots: &'static [ProcSlot] = TABLE.get().copied().unwrap_or(&[]);
    slots.iter().enumerate().map(|(index, s)| ProcInfo {
        index,
        pid: s.pid.load(Ordering::Acquire),
        rank: s.rank,
        desc: String::from_utf8_lossy(&s.desc[..(s.desc_len as usize).min(MAX_DESC)]).into_owned(),
    })
}

/// Description of slot `index`, or `"?"`.
pub fn desc_of(index: usize) -> String {
    process_table()
        .nth(index)
        .map(|p| p.desc)
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::PlanInput;

    #[test]
    fn table_in_shm_reads_back() {
        ser_shm::init(1 << 20).unwrap();
        let plan = SpawnPlan::new(&PlanInput {
            udp_sockets: vec!["127.0.0.1:5060".into()],
            children: 2,
            ..PlanInput::default()
        });
        create(&plan).unwrap();
        set_pid(1, 4242);
        let t: Vec<ProcInfo> = process_table().collect();
        assert_eq!(t.len(), 4);
        assert_eq!(t[1].pid, 4242);
        assert_eq!(t[1].desc, "udp receiver child=0 sock=127.0.0.1:5060");
        assert_eq!(t[3].desc, "timer");
        assert_eq!(index_of(4242), Some(1));
        assert!(create(&plan).is_err());
    }
}
