//! Header field names: recognition without allocation, compact forms.

/// The header fields SER knows by name (RFC 3261 §20 and common
/// extensions). Unknown names are `Other`; their bytes stay in the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum HeaderName {
    /// `Via` (compact `v`)
    Via,
    /// `From` (compact `f`)
    From,
    /// `To` (compact `t`)
    To,
    /// `Call-ID` (compact `i`)
    CallId,
    /// `CSeq`
    CSeq,
    /// `Contact` (compact `m`)
    Contact,
    /// `Max-Forwards`
    MaxForwards,
    /// `Content-Length` (compact `l`)
    ContentLength,
    /// `Content-Type` (compact `c`)
    ContentType,
    /// `Expires`
    Expires,
    /// `Route`
    Route,
    /// `Record-Route`
    RecordRoute,
    /// `Authorization`
    Authorization,
    /// `Proxy-Authorization`
    ProxyAuthorization,
    /// `WWW-Authenticate`
    WwwAuthenticate,
    /// `Proxy-Authenticate`
    ProxyAuthenticate,
    /// `Supported` (compact `k`)
    Supported,
    /// `Require`
    Require,
    /// `Proxy-Require`
    ProxyRequire,
    /// `Unsupported`
    Unsupported,
    /// `Event` (compact `o`)
    Event,
    /// `Accept`
    Accept,
    /// `Accept-Encoding`
    AcceptEncoding,
    /// `Accept-Language`
    AcceptLanguage,
    /// `Allow`
    Allow,
    /// `Allow-Events` (compact `u`)
    AllowEvents,
    /// `User-Agent`
    UserAgent,
    /// `Server`
    Server,
    /// `Subject` (compact `s`)
    Subject,
    /// `Content-Encoding` (compact `e`)
    ContentEncoding,
    /// `Content-Disposition`
    ContentDisposition,
    /// `Content-Language`
    ContentLanguage,
    /// `Refer-To` (compact `r`)
    ReferTo,
    /// `Referred-By` (compact `b`)
    ReferredBy,
    /// `Session-Expires` (compact `x`)
    SessionExpires,
    /// `Min-SE`
    MinSe,
    /// `Identity` (compact `y`)
    Identity,
    /// `Identity-Info` (compact `n`)
    IdentityInfo,
    /// `Accept-Contact` (compact `a`)
    AcceptContact,
    /// `Reject-Contact` (compact `j`)
    RejectContact,
    /// `Request-Disposition` (compact `d`)
    RequestDisposition,
    /// `Date`
    Date,
    /// `Priority`
    Priority,
    /// `Organization`
    Organization,
    /// `Warning`
    Warning,
    /// `Retry-After`
    RetryAfter,
    /// `Min-Expires`
    MinExpires,
    /// `MIME-Version`
    MimeVersion,
    /// `Reply-To`
    ReplyTo,
    /// `Timestamp`
    Timestamp,
    /// `Subscription-State`
    SubscriptionState,
    /// `SIP-ETag`
    SipEtag,
    /// `SIP-If-Match`
    SipIfMatch,
    /// `Path`
    Path,
    /// `P-Asserted-Identity`
    PAssertedIdentity,
    /// `P-Preferred-Identity`
    PPreferredIdentity,
    /// `Privacy`
    Privacy,
    /// `RSeq`
    RSeq,
    /// `RAck`
    RAck,
    /// `Diversion`
    Diversion,
    /// `Remote-Party-ID`
    RemotePartyId,
    /// `Call-Info`
    CallInfo,
    /// `Alert-Info`
    AlertInfo,
    /// `Error-Info`
    ErrorInfo,
    /// `In-Reply-To`
    InReplyTo,
    /// Any other header field.
    Other,
}

impl HeaderName {
    /// Recognises a header field name, case-insensitively, including the
    /// compact forms of RFC 3261 §7.3.3 and its extensions.
    pub fn from_bytes(name: &[u8]) -> HeaderName {
        // Longest known name is 20 bytes; anything longer is unknown.
        let mut low = [0u8; 20];
        if name.is_empty() || name.len() > low.len() {
            return HeaderName::Other;
        }
        for (d, s) in low.iter_mut().zip(name) {
            *d = s.to_ascii_lowercase();
        }
        match &low[..name.len()] {
            b"via" | b"v" => HeaderName::Via,
            b"from" | b"f" => HeaderName::From,
            b"to" | b"t" => HeaderName::To,
            b"call-id" | b"i" => HeaderName::CallId,
            b"cseq" => HeaderName::CSeq,
            b"contact" | b"m" => HeaderName::Contact,
            b"max-forwards" => HeaderName::MaxForwards,
            b"content-length" | b"l" => HeaderName::ContentLength,
            b"content-type" | b"c" => HeaderName::ContentType,
            b"expires" => HeaderName::Expires,
            b"route" => HeaderName::Route,
            b"record-route" => HeaderName::RecordRoute,
            b"authorization" => HeaderName::Authorization,
            b"proxy-authorization" => HeaderName::ProxyAuthorization,
            b"www-authenticate" => HeaderName::WwwAuthenticate,
            b"proxy-authenticate" => HeaderName::ProxyAuthenticate,
            b"supported" | b"k" => HeaderName::Supported,
            b"require" => HeaderName::Require,
            b"proxy-require" => HeaderName::ProxyRequire,
            b"unsupported" => HeaderName::Unsupported,
            b"event" | b"o" => HeaderName::Event,
            b"accept" => HeaderName::Accept,
            b"accept-encoding" => HeaderName::AcceptEncoding,
            b"accept-language" => HeaderName::AcceptLanguage,
            b"allow" => HeaderName::Allow,
            b"allow-events" | b"u" => HeaderName::AllowEvents,
            b"user-agent" => HeaderName::UserAgent,
            b"server" => HeaderName::Server,
            b"subject" | b"s" => HeaderName::Subject,
            b"content-encoding" | b"e" => HeaderName::ContentEncoding,
            b"content-disposition" => HeaderName::ContentDisposition,
            b"content-language" => HeaderName::ContentLanguage,
            b"refer-to" | b"r" => HeaderName::ReferTo,
            b"referred-by" | b"b" => HeaderName::ReferredBy,
            b"session-expires" | b"x" => HeaderName::SessionExpires,
            b"min-se" => HeaderName::MinSe,
            b"identity" | b"y" => HeaderName::Identity,
            b"identity-info" | b"n" => HeaderName::IdentityInfo,
            b"accept-contact" | b"a" => HeaderName::AcceptContact,
            b"reject-contact" | b"j" => HeaderName::RejectContact,
            b"request-disposition" | b"d" => HeaderName::RequestDisposition,
            b"date" => HeaderName::Date,
            b"priority" => HeaderName::Priority,
            b"organization" => HeaderName::Organization,
            b"warning" => HeaderName::Warning,
            b"retry-after" => HeaderName::RetryAfter,
            b"min-expires" => HeaderName::MinExpires,
            b"mime-version" => HeaderName::MimeVersion,
            b"reply-to" => HeaderName::ReplyTo,
            b"timestamp" => HeaderName::Timestamp,
            b"subscription-state" => HeaderName::SubscriptionState,
            b"sip-etag" => HeaderName::SipEtag,
            b"sip-if-match" => HeaderName::SipIfMatch,
            b"path" => HeaderName::Path,
            b"p-asserted-identity" => HeaderName::PAssertedIdentity,
            b"p-preferred-identity" => HeaderName::PPreferredIdentity,
            b"privacy" => HeaderName::Privacy,
            b"rseq" => HeaderName::RSeq,
            b"rack" => HeaderName::RAck,
            b"diversion" => HeaderName::Diversion,
            b"remote-party-id" => HeaderName::RemotePartyId,
            b"call-info" => HeaderName::CallInfo,
            b"alert-info" => HeaderName::AlertInfo,
            b"error-info" => HeaderName::ErrorInfo,
            b"in-reply-to" => HeaderName::InReplyTo,
            _ => HeaderName::Other,
        }
    }

    /// The canonical spelling (`"Other"` for unknown names).
    pub fn as_str(&self) -> &'static str {
        match self {
            HeaderName::Via => "Via",
            HeaderName::From => "From",
            HeaderName::To => "To",
            HeaderName::CallId => "Call-ID",
            HeaderName::CSeq => "CSeq",
            HeaderName::Contact => "Contact",
            HeaderName::MaxForwards => "Max-Forwards",
            HeaderName::ContentLength => "Content-Length",
            HeaderName::ContentType => "Content-Type",
            HeaderName::Expires => "Expires",
            HeaderName::Route => "Route",
            HeaderName::RecordRoute => "Record-Route",
            HeaderName::Authorization => "Authorization",
            HeaderName::ProxyAuthorization => "Proxy-Authorization",
            HeaderName::WwwAuthenticate => "WWW-Authenticate",
            HeaderName::ProxyAuthenticate => "Proxy-Authenticate",
            HeaderName::Supported => "Supported",
            HeaderName::Require => "Require",
            HeaderName::ProxyRequire => "Proxy-Require",
            HeaderName::Unsupported => "Unsupported",
            HeaderName::Event => "Event",
            HeaderName::Accept => "Accept",
            HeaderName::AcceptEncoding => "Accept-Encoding",
            HeaderName::AcceptLanguage => "Accept-Language",
            HeaderName::Allow => "Allow",
            HeaderName::AllowEvents => "Allow-Events",
            HeaderName::UserAgent => "User-Agent",
            HeaderName::Server => "Server",
            HeaderName::Subject => "Subject",
            HeaderName::ContentEncoding => "Content-Encoding",
            HeaderName::ContentDisposition => "Content-Disposition",
            HeaderName::ContentLanguage => "Content-Language",
            HeaderName::ReferTo => "Refer-To",
            HeaderName::ReferredBy => "Referred-By",
            HeaderName::SessionExpires => "Session-Expires",
            HeaderName::MinSe => "Min-SE",
            HeaderName::Identity => "Identity",
            HeaderName::IdentityInfo => "Identity-Info",
            HeaderName::AcceptContact => "Accept-Contact",
            HeaderName::RejectContact => "Reject-Contact",
            HeaderName::RequestDisposition => "Request-Disposition",
            HeaderName::Date => "Date",
            HeaderName::Priority => "Priority",
            HeaderName::Organization => "Organization",
            HeaderName::Warning => "Warning",
            HeaderName::RetryAfter => "Retry-After",
            HeaderName::MinExpires => "Min-Expires",
            HeaderName::MimeVersion => "MIME-Version",
            HeaderName::ReplyTo => "Reply-To",
            HeaderName::Timestamp => "Timestamp",
            HeaderName::SubscriptionState => "Subscription-State",
            HeaderName::SipEtag => "SIP-ETag",
            HeaderName::SipIfMatch => "SIP-If-Match",
            HeaderName::Path => "Path",
            HeaderName::PAssertedIdentity => "P-Asserted-Identity",
            HeaderName::PPreferredIdentity => "P-Preferred-Identity",
            HeaderName::Privacy => "Privacy",
            HeaderName::RSeq => "RSeq",
            HeaderName::RAck => "RAck",
            HeaderName::Diversion => "Diversion",
            HeaderName::RemotePartyId => "Remote-Party-ID",
            HeaderName::CallInfo => "Call-Info",
            HeaderName::AlertInfo => "Alert-Info",
            HeaderName::ErrorInfo => "Error-Info",
            HeaderName::InReplyTo => "In-Reply-To",
            HeaderName::Other => "Other",
        }
    }
}

impl std::fmt::Display for HeaderName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_compact_forms() {
        assert_eq!(HeaderName::from_bytes(b"viA"), HeaderName::Via);
        assert_eq!(HeaderName::from_bytes(b"V"), HeaderName::Via);
        assert_eq!(HeaderName::from_bytes(b"i"), HeaderName::CallId);
        assert_eq!(
            HeaderName::from_bytes(b"MaX-fOrWaRdS"),
            HeaderName::MaxForwards
        );
        assert_eq!(HeaderName::from_bytes(b"C%6Fntact"), HeaderName::Other);
        assert_eq!(HeaderName::from_bytes(b"q"), HeaderName::Other);
        assert_eq!(HeaderName::from_bytes(&[b'x'; 40]), HeaderName::Other);
        for c in b"iftvmlcksoeurbxy" {
            assert_ne!(HeaderName::from_bytes(&[*c]), HeaderName::Other);
        }
    }
}
