//! What a script function tells the interpreter (replaces the int convention of
//! SER's `sr_module.h`: positive = true, negative = false, 0 = stop).

/// Result of a script function.  The historical int appears only through
/// [`Flow::to_int`] / [`Flow::from_int`], at the script boundary (`$?`, `return`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Success, `1`.
    True,
    /// Failure, `-1`.
    False,
    /// A specific non-zero code (`lookup` returns -1/-2/-3, `t_relay` 2, ...).
    Code(i32),
    /// Stop the script and mark the message dropped (SER `drop`, return 0).
    Drop,
    /// Stop the script (SER `exit`, return 0).
    Exit,
}

impl Flow {
    /// `true` → [`Flow::True`], `false` → [`Flow::False`].
    pub fn from_bool(b: bool) -> Flow {
        if b {
            Flow::True
        } else {
            Flow::False
        }
    }

    /// The SER int: positive true, negative false, 0 stop.
    pub fn to_int(self) -> i32 {
        match self {
            Flow::True => 1,
            Flow::False => -1,
            Flow::Code(n) => n,
            Flow::Drop | Flow::Exit => 0,
        }
    }

    /// From a SER int: 0 means stop the script.
    pub fn from_int(n: i32) -> Flow {
        match n {
            0 => Flow::Exit,
            1 => Flow::True,
            -1 => Flow::False,
            n => Flow::Code(n),
        }
    }

    /// Whether the script must stop after this call.
    pub fn stops(self) -> bool {
        self.to_int() == 0
    }

    /// Truth value in a condition (`if (f())`): positive is true.
    pub fn is_true(self) -> bool {
        self.to_int() > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_mapping_round_trips() {
        for n in [-3, -2, -1, 1, 2, 7] {
            assert_eq!(Flow::from_int(n).to_int(), n);
        }
        assert!(Flow::from_int(0).stops());
        assert!(Flow::Drop.stops() && Flow::Exit.stops());
        assert!(!Flow::Code(-2).is_true() && Flow::Code(2).is_true());
        assert!(!Flow::False.stops());
    }
}
