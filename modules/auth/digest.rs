//! Digest computations (RFC 2617 §3.2.2, RFC 7616 §3.4.1): HA1, HA2 and the
//! request-digest for MD5, MD5-sess, SHA-256 and SHA-256-sess.  Replaces
//! `modules/auth/rfc2617.c` and `rfc2617_sha256.c`.

use md5::{Digest, Md5};
use sha2::Sha256;

/// A digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// `MD5` (also when absent).
    Md5,
    /// `MD5-sess`.
    Md5Sess,
    /// `SHA-256`.
    Sha256,
    /// `SHA-256-sess`.
    Sha256Sess,
}

impl Alg {
    /// From the `algorithm=` value (case-insensitive); `None` if unsupported.
    pub fn parse(s: &str) -> Option<Alg> {
        Some(
            match s.trim().trim_matches('"').to_ascii_uppercase().as_str() {
                "" | "MD5" => Alg::Md5,
                "MD5-SESS" => Alg::Md5Sess,
                "SHA-256" => Alg::Sha256,
                "SHA-256-SESS" => Alg::Sha256Sess,
                _ => return None,
            },
        )
    }

    /// The name as sent in a challenge.
    pub fn name(self) -> &'static str {
        match self {
            Alg::Md5 => "MD5",
            Alg::Md5Sess => "MD5-sess",
            Alg::Sha256 => "SHA-256",
            Alg::Sha256Sess => "SHA-256-sess",
        }
    }

    fn sess(self) -> bool {
        matches!(self, Alg::Md5Sess | Alg::Sha256Sess)
    }

    /// Lower-case hex hash of the parts joined by `:`.
    pub fn h(self, parts: &[&[u8]]) -> String {
        fn run<D: Digest>(parts: &[&[u8]]) -> String {
            let mut d = D::new();
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(p);
            }
            hex(&d.finalize())
        }
        match self {
            Alg::Md5 | Alg::Md5Sess => run::<Md5>(parts),
            Alg::Sha256 | Alg::Sha256Sess => run::<Sha256>(parts),
        }
    }

    /// Length of a hex hash of this algorithm.
    pub fn hex_len(self) -> usize {
        match self {
            Alg::Md5 | Alg::Md5Sess => 32,
            Alg::Sha256 | Alg::Sha256Sess => 64,
        }
    }
}

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(D[usize::from(x >> 4)] as char);
        s.push(D[usize::from(x & 15)] as char);
    }
    s
}

/// HA1 = H(username:realm:password).
pub fn ha1(alg: Alg, user: &str, realm: &str, password: &str) -> String {
    alg.h(&[user.as_bytes(), realm.as_bytes(), password.as_bytes()])
}

/// The HA1 a response is computed with: for `-sess`, H(HA1:nonce:cnonce).
pub fn session_ha1(alg: Alg, ha1: &str, nonce: &str, cnonce: &str) -> String {
    if alg.sess() {
        alg.h(&[ha1.as_bytes(), nonce.as_bytes(), cnonce.as_bytes()])
    } else {
        ha1.to_owned()
    }
}

/// What the client's `response=` must be.
#[allow(clippy::too_many_arguments)]
pub fn response(
    alg: Alg,
    ha1: &str,
    nonce: &str,
    nc: &str,
    cnonce: &str,
    qop: &str,
    method: &str,
    uri: &str,
    body: &[u8],
) -> String {
    let ha1 = session_ha1(alg, ha1, nonce, cnonce);
    let ha2 = if qop.eq_ignore_ascii_case("auth-int") {
        let hb = alg.h(&[body]);
        alg.h(&[method.as_bytes(), uri.as_bytes(), hb.as_bytes()])
    } else {
        alg.h(&[method.as_bytes(), uri.as_bytes()])
    };
    if qop.is_empty() {
        alg.h(&[ha1.as_bytes(), nonce.as_bytes(), ha2.as_bytes()])
    } else {
        alg.h(&[
            ha1.as_bytes(),
            nonce.as_bytes(),
            nc.as_bytes(),
            cnonce.as_bytes(),
            qop.as_bytes(),
            ha2.as_bytes(),
        ])
    }
}

/// Compares two hex digests in constant time (case-insensitive).
pub fn hex_eq(a: &str, b: &str) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| {
        acc | (x.to_ascii_lowercase() ^ y.to_ascii_lowercase())
    }) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 2617 §3.5.
    #[test]
    fn rfc2617_example() {
        let h = ha1(Alg::Md5, "Mufasa", "testrealm@host.com", "Circle Of Life");
        assert_eq!(h, "939e7578ed9e3c518a452acee763bce9");
        let r = response(
            Alg::Md5,
            &h,
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            "00000001",
            "0a4f113b",
            "auth",
            "GET",
            "/dir/index.html",
            b"",
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    // RFC 7616 §3.9.1 (SHA-256, qop=auth).
    #[test]
    fn rfc7616_sha256_example() {
        let h = ha1(
            Alg::Sha256,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
        );
        let r = response(
            Alg::Sha256,
            &h,
            "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            "00000001",
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            "auth",
            "GET",
            "/dir/index.html",
            b"",
        );
        assert_eq!(
            r,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn no_qop_and_names() {
        let h = ha1(Alg::Md5, "u", "r", "p");
        let r = response(Alg::Md5, &h, "n", "", "", "", "REGISTER", "sip:r", b"");
        assert_eq!(
            r,
            Alg::Md5.h(&[
                h.as_bytes(),
                b"n",
                Alg::Md5.h(&[b"REGISTER", b"sip:r"]).as_bytes()
            ])
        );
        assert_eq!(Alg::parse("md5-Sess"), Some(Alg::Md5Sess));
        assert_eq!(Alg::parse("SHA-512-256"), None);
        assert!(hex_eq("ABC", "abc") && !hex_eq("abc", "abd") && !hex_eq("a", "ab"));
    }
}
