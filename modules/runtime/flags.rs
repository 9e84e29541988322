//! Per-message flags (`setflag`/`resetflag`/`isflagset`) and branch flags
//! (`setbflag`...): 32 bits each, as SER's `flag_t`.

/// Highest flag index accepted (SER `MAX_FLAG`).
pub const MAX_FLAG: u32 = 31;

/// A 32-bit flag set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags(pub u32);

impl Flags {
    /// Set flag `n` (0..=31; out of range is ignored, fixups reject it earlier).
    pub fn set(&mut self, n: u32) {
        if n <= MAX_FLAG {
            self.0 |= 1 << n;
        }
    }

    /// Clear flag `n`.
    pub fn reset(&mut self, n: u32) {
        if n <= MAX_FLAG {
            self.0 &= !(1 << n);
        }
    }

    /// Whether flag `n` is set.
    pub fn is_set(&self, n: u32) -> bool {
        n <= MAX_FLAG && self.0 & (1 << n) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_reset() {
        let mut f = Flags::default();
        f.set(0);
        f.set(31);
        f.set(32);
        assert!(f.is_set(0) && f.is_set(31) && !f.is_set(32) && !f.is_set(5));
        f.reset(0);
        assert!(!f.is_set(0));
        assert_eq!(f.0, 1 << 31);
    }
}
