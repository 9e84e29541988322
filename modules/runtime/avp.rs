//! AVPs (attribute-value pairs) of one message: Kamailio `$avp(i:80)`,
//! `$avp(s:x)` and SER 3.0 `$t.did`, `$fu.uid`, `$gw_ip` all live in one store
//! keyed by (track, class, name).  Replaces `core/usr_avp.c` (private part).

use crate::runtime::value::Value;

/// Which side of the call an AVP belongs to (SER 3.0 tracks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Track {
    /// `$f...` (also the default).
    From,
    /// `$t...`.
    To,
}

/// SER 3.0 AVP classes, in read-search order when a name has no class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// `r`: URI attributes (default class when writing).
    Uri,
    /// `u`: user attributes.
    User,
    /// `d`: domain attributes.
    Domain,
    /// `g`: global attributes.
    Global,
}

/// The class of a class-less write (`$x = ..`, `$avp(s:x)`): the URI class,
/// as SER's and Kamailio's `add_avp` default it (ser-oob-3.0.cfg writes
/// `$authuid = $uid;` and reads `$fr.authuid`).
pub const WRITE_CLASS: Class = Class::Uri;

/// Search order for class-less reads.
pub const CLASS_ORDER: [Class; 4] = [Class::Uri, Class::User, Class::Domain, Class::Global];

/// An AVP name: `i:80` or `s:x` / plain `x`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AvpName {
    /// Numeric id.
    Int(i64),
    /// String name.
    Str(String),
}

/// A resolved AVP reference (from a pvar spec at fixup time).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AvpRef {
    /// Track (`$f.`/`$t.`); `None` = default (from).
    pub track: Option<Track>,
    /// Class (`u`, `d`, `r`, `g`); `None` = search all on read, uri on write.
    pub class: Option<Class>,
    /// The name.
    pub name: AvpName,
}

impl AvpRef {
    /// A class-less, track-less string-named AVP (`$gw_ip`, `$avp(s:x)`).
    pub fn named(name: &str) -> AvpRef {
        AvpRef {
            track: None,
            class: None,
            name: AvpName::Str(name.to_owned()),
        }
    }

    /// Parse the inside of `$avp(...)`: `i:80`, `s:x`, `x`, or SER-style
    /// `f.x`/`tu.x` prefixes.
    pub fn parse_kamailio(inner: &str) -> Result<AvpRef, String> {
        let inner = inner.trim();
        if let Some(n) = inner.strip_prefix("i:") {
            let id = n
                .trim()
                .parse()
                .map_err(|_| format!("bad AVP id `{n}` in $avp({inner})"))?;
            return Ok(AvpRef {
                track: None,
                class: None,
                name: AvpName::Int(id),
            });
        }
        if let Some(s) = inner.strip_prefix("s:") {
            return valid_name(s).map(AvpRef::named);
        }
        if let Some((prefix, name)) = inner.split_once('.') {
            if let Some((track, class)) = parse_prefix(prefix) {
                let name = valid_name(name)?;
                return Ok(AvpRef {
                    track,
                    class,
                    name: AvpName::Str(name.to_owned()),
                });
            }
        }
        valid_name(inner).map(AvpRef::named)
    }
}

fn valid_name(s: &str) -> Result<&str, String> {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        Ok(s)
    } else {
        Err(format!("bad AVP name `{s}`"))
    }
}

/// Parse a SER 3.0 track/class prefix (`f`, `t`, `fu`, `td`, `g`, `u`, `fr`...).
pub fn parse_prefix(p: &str) -> Option<(Option<Track>, Option<Class>)> {
    let mut chars = p.chars();
    let mut track = None;
    let mut class = None;
    let first = chars.next()?;
    let rest = match first {
        'f' => {
            track = Some(Track::From);
            chars.next()
        }
        't' => {
            track = Some(Track::To);
            chars.next()
        }
        other => Some(other),
    };
    if let Some(c) = rest {
        class = Some(match c {
            'u' => Class::User,
            'd' => Class::Domain,
            'r' => Class::Uri,
            'g' => Class::Global,
            _ => return None,
        });
        if chars.next().is_some() {
            return None;
        }
    }
    if track.is_none() && class.is_none() {
        return None;
    }
    Some((track, class))
}

/// One stored AVP.
#[derive(Debug, Clone)]
struct Avp {
    track: Track,
    class: Class,
    name: AvpName,
    value: Value,
    flags: u32,
}

/// The AVP list of one message (newest first on read, like SER's stack).
#[derive(Debug, Clone, Default)]
pub struct AvpStore {
    avps: Vec<Avp>,
}

impl AvpStore {
    fn matches(a: &Avp, r: &AvpRef, class: Class) -> bool {
        a.name == r.name && a.class == class && a.track == r.track.unwrap_or(Track::From)
    }

    fn classes(r: &AvpRef) -> &'static [Class] {
        match r.class {
            Some(Class::Uri) => &[Class::Uri],
            Some(Class::User) => &[Class::User],
            Some(Class::Domain) => &[Class::Domain],
            Some(Class::Global) => &[Class::Global],
            None => &CLASS_ORDER,
        }
    }

    /// The newest value of an AVP (class-less refs search uri, user, domain, global).
    pub fn get(&self, r: &AvpRef) -> Option<&Value> {
        let global_any = r.class.is_none();
        for &class in Self::classes(r) {
            let found = self.avps.iter().rev().find(|a| {
                Self::matches(a, r, class)
                    || (global_any
                        && class == Class::Global
                        && a.class == class
                        && a.name == r.name)
            });
            if let Some(a) = found {
                return Some(&a.value);
            }
        }
        None
    }

    /// All values of an AVP, newest first.
    pub fn get_all(&self, r: &AvpRef) -> Vec<&Value> {
        let class = r.class.unwrap_or(WRITE_CLASS);
        self.avps
            .iter()
            .rev()
            .filter(|a| Self::matches(a, r, class))
            .map(|a| &a.value)
            .collect()
    }

    /// Add a value (SER `add_avp`; older values stay, reads see the newest).
    pub fn add(&mut self, r: &AvpRef, value: Value) {
        self.avps.push(Avp {
            track: r.track.unwrap_or(Track::From),
            class: r.class.unwrap_or(WRITE_CLASS),
            name: r.name.clone(),
            value,
            flags: 0,
        });
    }

    /// Script assignment `$x = v`: replaces all values (Kamailio `$avp(x) = v`
    /// deletes the old ones first); assigning null deletes.
    pub fn assign(&mut self, r: &AvpRef, value: Value) {
        self.delete(r);
        if !value.is_null() {
            self.add(r, value);
        }
    }

    /// Delete every value of the AVP.
    pub fn delete(&mut self, r: &AvpRef) {
        let class = r.class.unwrap_or(WRITE_CLASS);
        let track = r.track.unwrap_or(Track::From);
        self.avps.retain(|a| {
            !(a.name == r.name && a.track == track && (r.class.is_none() || a.class == class))
        });
    }

    /// Set an AVP flag bit (`setavpflag`), on the newest value.
    pub fn set_flag(&mut self, r: &AvpRef, bit: u32) -> bool {
        let class = r.class.unwrap_or(WRITE_CLASS);
        match self
            .avps
            .iter_mut()
            .rev()
            .find(|a| Self::matches(a, r, class))
        {
            Some(a) => {
                a.flags |= 1 << bit.min(31);
                true
            }
            None => false,
        }
    }

    /// Clear an AVP flag bit (`resetavpflag`), on the newest value.
    pub fn reset_flag(&mut self, r: &AvpRef, bit: u32) -> bool {
        let class = r.class.unwrap_or(WRITE_CLASS);
        match self
            .avps
            .iter_mut()
            .rev()
            .find(|a| Self::matches(a, r, class))
        {
            Some(a) => {
                a.flags &= !(1 << bit.min(31));
                true
            }
            None => false,
        }
    }

    /// Flags of the newest value.
    pub fn flags(&self, r: &AvpRef) -> Option<u32> {
        let class = r.class.unwrap_or(WRITE_CLASS);
        self.avps
            .iter()
            .rev()
            .find(|a| Self::matches(a, r, class))
            .map(|a| a.flags)
    }

    /// Every stored AVP, oldest first, as `(track, class, name, value, flags)`:
    /// tm copies them into a transaction to restore in failure/onreply routes.
    pub fn export(&self) -> Vec<(Track, Class, AvpName, Value, u32)> {
        self.avps
            .iter()
            .map(|a| (a.track, a.class, a.name.clone(), a.value.clone(), a.flags))
            .collect()
    }

    /// Append one AVP as [`AvpStore::export`] gave it (newest last).
    pub fn import(&mut self, track: Track, class: Class, name: AvpName, value: Value, flags: u32) {
        self.avps.push(Avp {
            track,
            class,
            name,
            value,
            flags,
        });
    }

    /// Number of stored values.
    pub fn len(&self) -> usize {
        self.avps.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.avps.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kamailio_names() {
        assert_eq!(
            AvpRef::parse_kamailio("i:80").unwrap().name,
            AvpName::Int(80)
        );
        assert_eq!(AvpRef::parse_kamailio("s:x").unwrap(), AvpRef::named("x"));
        assert_eq!(AvpRef::parse_kamailio("x").unwrap(), AvpRef::named("x"));
        let r = AvpRef::parse_kamailio("tu.uid").unwrap();
        assert_eq!((r.track, r.class), (Some(Track::To), Some(Class::User)));
        assert!(AvpRef::parse_kamailio("i:x").is_err());
    }

    #[test]
    fn prefixes() {
        assert_eq!(parse_prefix("f"), Some((Some(Track::From), None)));
        assert_eq!(
            parse_prefix("fr"),
            Some((Some(Track::From), Some(Class::Uri)))
        );
        assert_eq!(parse_prefix("g"), Some((None, Some(Class::Global))));
        assert_eq!(parse_prefix("fx"), None);
        assert_eq!(parse_prefix("abc"), None);
    }

    #[test]
    fn store_tracks_and_classes() {
        let mut s = AvpStore::default();
        let tdid = AvpRef {
            track: Some(Track::To),
            class: None,
            name: AvpName::Str("did".into()),
        };
        let fdid = AvpRef {
            track: Some(Track::From),
            class: None,
            name: AvpName::Str("did".into()),
        };
        assert!(s.get(&tdid).is_none());
        s.assign(&tdid, "d1".into());
        assert_eq!(s.get(&tdid), Some(&Value::from("d1")));
        assert!(s.get(&fdid).is_none());
        // a user-class write is seen by a class-less read of the same track
        let tuid = AvpRef {
            track: Some(Track::To),
            class: Some(Class::User),
            name: AvpName::Str("uid".into()),
        };
        s.assign(&tuid, "u".into());
        let tuid_any = AvpRef {
            class: None,
            ..tuid.clone()
        };
        assert_eq!(s.get(&tuid_any), Some(&Value::from("u")));
        // stack semantics
        let x = AvpRef::named("x");
        s.add(&x, Value::Int(1));
        s.add(&x, Value::Int(2));
        assert_eq!(s.get(&x), Some(&Value::Int(2)));
        assert_eq!(s.get_all(&x).len(), 2);
        s.assign(&x, Value::Null);
        assert!(s.get(&x).is_none());
        assert!(s.set_flag(&tdid, 1) && s.flags(&tdid) == Some(2));
        assert!(s.set_flag(&tdid, 3) && s.reset_flag(&tdid, 1) && s.flags(&tdid) == Some(8));
        assert!(!s.reset_flag(&AvpRef::named("nothere"), 1));
        // a class-less write is in the uri class: `$authuid = ..` is `$fr.authuid`
        s.assign(&AvpRef::named("authuid"), "u1".into());
        let fr = AvpRef {
            track: Some(Track::From),
            class: Some(Class::Uri),
            name: AvpName::Str("authuid".into()),
        };
        assert_eq!(s.get(&fr), Some(&Value::from("u1")));
    }
}
