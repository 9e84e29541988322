//! SER 3.0 selects (`@to.tag`, `@from.uri.host`, `@ruri.host`,
//! `@cfg_get.pstn.gw_ip`...), resolved at fixup time.  Replaces the core part of
//! SER's `select_core.c`.

use crate::runtime::pvar::{NameAddr, UriPart};

/// What a select reads from a name-addr header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HdrPart {
    /// `@to`: the whole header body.
    Body,
    /// `@to.uri[.user|.host|.port]`.
    Uri(UriPart),
    /// `@to.tag`.
    Tag,
    /// `@to.name`: display name.
    Name,
}

/// A resolved select.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Select {
    /// `@ruri[.user|.host|.port]`.
    Ruri(UriPart),
    /// `@from...`, `@to...`.
    NameAddr(NameAddr, HdrPart),
    /// `@call_id`.
    CallId,
    /// `@cseq` (whole body) / `@cseq.num`.
    CSeq,
    /// `@method`.
    Method,
    /// `@src.ip`.
    SrcIp,
    /// `@src.port`.
    SrcPort,
    /// `@msg.<header>` / `@hf_value.<header>`: a header body by name.
    Header(String),
    /// `@cfg_get.group.name`.
    CfgGet {
        /// cfg group.
        group: String,
        /// parameter name.
        name: String,
    },
}

fn uri_part(rest: &[&str], full: &str) -> Result<UriPart, String> {
    match rest {
        [] => Ok(UriPart::Whole),
        ["user"] => Ok(UriPart::User),
        ["host"] => Ok(UriPart::Host),
        ["port"] => Ok(UriPart::Port),
        _ => Err(format!("unknown select `@{full}`")),
    }
}

impl Select {
    /// Parse a select, with or without its leading `@`.
    pub fn parse(s: &str) -> Result<Select, String> {
        let full = s.strip_prefix('@').unwrap_or(s);
        let parts: Vec<&str> = full.split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(format!("bad select `@{full}`"));
        }
        let which = |n: &str| match n {
            "from" | "f" => Some(NameAddr::From),
            "to" | "t" => Some(NameAddr::To),
            _ => None,
        };
        Ok(match parts.as_slice() {
            ["ruri", rest @ ..] => Select::Ruri(uri_part(rest, full)?),
            [hdr, rest @ ..] if which(hdr).is_some() => {
                let w = which(hdr).expect("checked by guard");
                let part = match rest {
                    [] => HdrPart::Body,
                    ["tag"] => HdrPart::Tag,
                    ["name"] => HdrPart::Name,
                    ["uri", up @ ..] => HdrPart::Uri(uri_part(up, full)?),
                    _ => return Err(format!("unknown select `@{full}`")),
                };
                Select::NameAddr(w, part)
            }
            ["call_id"] | ["callid"] => Select::CallId,
            ["cseq"] | ["cseq", "num"] => Select::CSeq,
            ["method"] => Select::Method,
            ["src", "ip"] => Select::SrcIp,
            ["src", "port"] => Select::SrcPort,
            ["msg", name] | ["hf_value", name] => Select::Header(name.replace('_', "-")),
            ["cfg_get", group, name] => Select::CfgGet {
                group: (*group).to_owned(),
                name: (*name).to_owned(),
            },
            _ => return Err(format!("unknown select `@{full}`")),
        })
    }

    /// Length of a select at the start of `s` (after `@`): identifier chars and dots.
    pub fn prefix_len(s: &str) -> usize {
        let body = s.strip_prefix('@').map_or(s, |b| b);
        let off = s.len() - body.len();
        let mut end = body
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(body.len());
        while end > 0 && body.as_bytes()[end - 1] == b'.' {
            end -= 1;
        }
        off + end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_selects() {
        assert_eq!(
            Select::parse("@to.tag").unwrap(),
            Select::NameAddr(NameAddr::To, HdrPart::Tag)
        );
        assert_eq!(
            Select::parse("@from.uri.host").unwrap(),
            Select::NameAddr(NameAddr::From, HdrPart::Uri(UriPart::Host))
        );
        assert_eq!(
            Select::parse("@ruri").unwrap(),
            Select::Ruri(UriPart::Whole)
        );
        assert_eq!(
            Select::parse("ruri.host").unwrap(),
            Select::Ruri(UriPart::Host)
        );
        assert_eq!(
            Select::parse("@to.uri").unwrap(),
            Select::NameAddr(NameAddr::To, HdrPart::Uri(UriPart::Whole))
        );
        assert_eq!(
            Select::parse("cfg_get.pstn.gw_ip").unwrap(),
            Select::CfgGet {
                group: "pstn".into(),
                name: "gw_ip".into()
            }
        );
        assert!(Select::parse("@nope.x").is_err());
        assert!(Select::parse("@to.").is_err());
    }

    #[test]
    fn prefix_len_stops_at_punctuation() {
        assert_eq!(Select::prefix_len("@ruri.host>;screen"), "@ruri.host".len());
        assert_eq!(Select::prefix_len("@ruri. x"), "@ruri".len());
    }
}
