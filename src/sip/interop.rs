//! Wire fixes between rsipstack and the carriers it talks to.
//!
//! rsipstack 0.7.14 spells the SHA-256 digest algorithm `SHA256`, while
//! RFC 7616 (and Kamailio, Asterisk, FreeSWITCH, carriers' SBCs) say
//! `SHA-256`: it cannot parse a `SHA-256` challenge and writes credentials a
//! strict server refuses. This inspector renames the token on the way in (in
//! challenges) and on the way out (in credentials). The name is not part of
//! the digest, so the hash is untouched. Pure string work, no I/O.

use rsipstack::sip::{Header, SipMessage};
use rsipstack::transaction::endpoint::MessageInspector;
use rsipstack::transport::SipAddr;

pub struct DigestAlgorithmNames;

impl MessageInspector for DigestAlgorithmNames {
    fn before_send(&self, mut msg: SipMessage, _dest: Option<&SipAddr>) -> SipMessage {
        if let SipMessage::Request(req) = &mut msg {
            for h in req.headers.iter_mut() {
                match h {
                    Header::Authorization(v) => {
                        if let Some(fixed) = rename_algorithm(v.value(), to_rfc) {
                            *h = Header::Authorization(fixed.into());
                        }
                    }
                    Header::ProxyAuthorization(v) => {
                        if let Some(fixed) = rename_algorithm(v.value(), to_rfc) {
                            *h = Header::ProxyAuthorization(fixed.into());
                        }
                    }
                    _ => {}
                }
            }
        }
        msg
    }

    fn after_received(&self, mut msg: SipMessage, _from: Option<&SipAddr>) -> SipMessage {
        if let SipMessage::Response(resp) = &mut msg {
            for h in resp.headers.iter_mut() {
                match h {
                    Header::WwwAuthenticate(v) => {
                        if let Some(fixed) = rename_algorithm(v.value(), to_rsipstack) {
                            *h = Header::WwwAuthenticate(fixed.into());
                        }
                    }
                    Header::ProxyAuthenticate(v) => {
                        if let Some(fixed) = rename_algorithm(v.value(), to_rsipstack) {
                            *h = Header::ProxyAuthenticate(fixed.into());
                        }
                    }
                    _ => {}
                }
            }
        }
        msg
    }
}

fn to_rfc(token: &str) -> Option<&'static str> {
    match token.to_ascii_uppercase().as_str() {
        "SHA256" => Some("SHA-256"),
        "SHA256-SESS" => Some("SHA-256-sess"),
        _ => None,
    }
}

fn to_rsipstack(token: &str) -> Option<&'static str> {
    match token.to_ascii_uppercase().as_str() {
        "SHA-256" => Some("SHA256"),
        "SHA-256-SESS" => Some("SHA256-sess"),
        _ => None,
    }
}

/// Rewrites the value of the `algorithm` parameter of a digest header;
/// `None` when there is nothing to change.
pub fn rename_algorithm(value: &str, map: fn(&str) -> Option<&'static str>) -> Option<String> {
    let lower = value.to_ascii_lowercase();
    let mut search = 0;
    while let Some(found) = lower[search..].find("algorithm") {
        let key_start = search + found;
        let before_ok =
            key_start == 0 || matches!(lower.as_bytes()[key_start - 1], b' ' | b',' | b'\t');
        let mut i = key_start + "algorithm".len();
        let bytes = value.as_bytes();
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        if before_ok && i < bytes.len() && bytes[i] == b'=' {
            i += 1;
            while i < bytes.len() && bytes[i] == b' ' {
                i += 1;
            }
            let quoted = i < bytes.len() && bytes[i] == b'"';
            let start = if quoted { i + 1 } else { i };
            let end = value[start..]
                .find(|c: char| c == '"' || c == ',' || c.is_whitespace())
                .map_or(value.len(), |e| start + e);
            let token = &value[start..end];
            return map(token).map(|new| format!("{}{}{}", &value[..start], new, &value[end..]));
        }
        search = key_start + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_spelling_is_read_as_rsipstack_expects() {
        let v = r#"Digest realm="carrier.test", nonce="abc", qop="auth", algorithm=SHA-256"#;
        assert_eq!(
            rename_algorithm(v, to_rsipstack).unwrap(),
            r#"Digest realm="carrier.test", nonce="abc", qop="auth", algorithm=SHA256"#
        );
        let quoted = r#"Digest algorithm="SHA-256-sess",realm="r",nonce="n""#;
        assert_eq!(
            rename_algorithm(quoted, to_rsipstack).unwrap(),
            r#"Digest algorithm="SHA256-sess",realm="r",nonce="n""#
        );
    }

    #[test]
    fn credentials_are_written_with_the_rfc_name() {
        let v = r#"Digest username="u", realm="r", nonce="n", uri="sip:a@b", response="x", algorithm=SHA256, qop=auth, nc=00000001, cnonce="c""#;
        let fixed = rename_algorithm(v, to_rfc).unwrap();
        assert!(fixed.contains("algorithm=SHA-256, qop=auth"), "{fixed}");
    }

    #[test]
    fn md5_and_absent_algorithm_are_left_alone() {
        assert_eq!(
            rename_algorithm(r#"Digest realm="r", algorithm=MD5"#, to_rfc),
            None
        );
        assert_eq!(
            rename_algorithm(r#"Digest realm="r", nonce="n""#, to_rsipstack),
            None
        );
        // A realm that merely contains the word is not the parameter.
        assert_eq!(
            rename_algorithm(r#"Digest realm="algorithm=SHA-256""#, to_rsipstack),
            None
        );
        assert_eq!(rename_algorithm("", to_rfc), None);
        assert_eq!(rename_algorithm("algorithm=", to_rfc), None);
    }
}
