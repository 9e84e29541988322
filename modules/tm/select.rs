//! Choosing the reply a forking proxy sends upstream (RFC 3261 §16.7 step 6):
//! a 6xx beats everything but a 2xx, otherwise the lowest class wins; within
//! 4xx the codes that let the caller fix and retry (401, 407, 415, 420, 484)
//! are preferred.  A selected 503 is relayed as 500 (§16.7 step 6).

/// Priority of a final reply code: lower is better.
pub fn priority(code: u16) -> u32 {
    let class_base = match code / 100 {
        2 => 0,
        6 => 1000,
        3 => 3000,
        4 => 4000,
        5 => 5000,
        1 => 11_000,
        _ => 32_000,
    };
    let within = match code {
        401 | 407 | 415 | 420 | 484 => 0,
        c => u32::from(c % 100) + 1,
    };
    class_base + within
}

/// The best of the branches' final codes (`None` for a branch without one):
/// the index of the winner, the first one on ties.
pub fn pick_best(codes: &[Option<u16>]) -> Option<usize> {
    codes
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.filter(|c| *c >= 200).map(|c| (priority(c), i)))
        .min()
        .map(|(_, i)| i)
}

/// The code actually relayed for a selected final reply (503 becomes 500,
/// so the caller does not retry another server of ours needlessly).
pub fn relayed_code(code: u16) -> u16 {
    if code == 503 {
        500
    } else {
        code
    }
}

/// Reason phrase of the replies tm generates itself.
pub fn local_reason(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        200 => "OK",
        408 => "Request Timeout",
        481 => "Call/Transaction Does Not Exist",
        487 => "Request Terminated",
        500 => "Server Internal Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_order() {
        assert_eq!(pick_best(&[Some(486), Some(200), Some(603)]), Some(1));
        assert_eq!(pick_best(&[Some(486), Some(603), Some(302)]), Some(1));
        assert_eq!(pick_best(&[Some(486), Some(302), Some(500)]), Some(1));
        assert_eq!(pick_best(&[Some(500), Some(486)]), Some(1));
        assert_eq!(pick_best(&[None, Some(408)]), Some(1));
        assert_eq!(pick_best(&[None, None]), None);
        assert_eq!(pick_best(&[Some(180)]), None);
    }

    #[test]
    fn within_class() {
        // lowest code within a class, auth challenges first among 4xx
        assert_eq!(pick_best(&[Some(486), Some(404)]), Some(1));
        assert_eq!(pick_best(&[Some(404), Some(407)]), Some(1));
        assert_eq!(pick_best(&[Some(401), Some(407)]), Some(0));
        assert_eq!(pick_best(&[Some(408), Some(408)]), Some(0));
        assert!(priority(600) < priority(300));
        assert!(priority(299) < priority(600));
    }

    #[test]
    fn relayed() {
        assert_eq!(relayed_code(503), 500);
        assert_eq!(relayed_code(486), 486);
        assert_eq!(local_reason(408), "Request Timeout");
    }
}
