//! Browser-safe feedback tokens: short-lived, signed, bound to one project and one target.
//!
//! A back end that holds a project API key mints a token for the answer it just rendered and
//! hands it to the browser, which posts signals with it and never sees a secret. The signature
//! is an HMAC-SHA256 keyed by the SHA-256 of the API key — which the collector already stores —
//! so a back end can mint tokens offline (no round trip), every collector can verify them, and
//! revoking the key invalidates its tokens.
//!
//! Format: `fwt_` + base64url(JSON claims) + `.` + base64url(HMAC(sha256(api_key), claims)).
//! Claims: `k` key id, `p` project, `exp` expiry (Unix seconds), and the scope: `t` trace id,
//! `m` message id and/or `s` session id (at least one).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const PREFIX: &str = "fwt_";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub k: String,
    pub p: String,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub t: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub m: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub s: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed feedback token: {0}")]
    Malformed(&'static str),
    #[error("the feedback token's signature does not match: it was not issued with a valid key of this project")]
    BadSignature,
    #[error("the feedback token expired; ask the back end for a new one")]
    Expired,
    #[error("the feedback token names no trace, message or session to judge")]
    NoScope,
    #[error("the feedback token does not allow signals on this target: it is scoped to {0}")]
    OutOfScope(String),
}

fn mac(key_hash_hex: &str, payload: &[u8]) -> Hmac<Sha256> {
    // The HMAC key is the raw SHA-256 of the API key (the hex string in `api_keys.key_hash`).
    let key = hex::decode(key_hash_hex).unwrap_or_default();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("HMAC takes keys of any length");
    mac.update(payload);
    mac
}

/// Mints a token with the API key itself (what a back end does).
pub fn mint(api_key: &str, claims: &Claims) -> String {
    mint_with_hash(&hex::encode(Sha256::digest(api_key.as_bytes())), claims)
}

pub fn mint_with_hash(key_hash_hex: &str, claims: &Claims) -> String {
    let payload = serde_json::to_vec(claims).expect("claims serialise");
    let sig = mac(key_hash_hex, &payload).finalize().into_bytes();
    format!("{PREFIX}{}.{}", B64.encode(&payload), B64.encode(sig))
}

/// The claims of a token, unverified: the key id says which key hash to verify with.
pub fn peek(token: &str) -> Result<(Claims, Vec<u8>, Vec<u8>), TokenError> {
    let body = token.strip_prefix(PREFIX).ok_or(TokenError::Malformed("it must start with fwt_"))?;
    let (payload, sig) = body.split_once('.').ok_or(TokenError::Malformed("missing signature"))?;
    let payload = B64.decode(payload).map_err(|_| TokenError::Malformed("claims are not base64url"))?;
    let sig = B64.decode(sig).map_err(|_| TokenError::Malformed("signature is not base64url"))?;
    let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed("claims are not the expected JSON"))?;
    Ok((claims, payload, sig))
}

/// Verifies a token against the hash of the key it names, at time `now` (Unix seconds).
pub fn verify(token: &str, key_hash_hex: &str, now: i64) -> Result<Claims, TokenError> {
    let (claims, payload, sig) = peek(token)?;
    mac(key_hash_hex, &payload).verify_slice(&sig).map_err(|_| TokenError::BadSignature)?;
    if claims.exp < now {
        return Err(TokenError::Expired);
    }
    if claims.t.is_empty() && claims.m.is_empty() && claims.s.is_empty() {
        return Err(TokenError::NoScope);
    }
    Ok(claims)
}

impl Claims {
    /// Whether a signal's target is inside this token's scope: every target the signal names
    /// must be one the token names — a session-scoped token cannot add another trace id, a
    /// message-scoped one another session — and a span id is accepted only inside the token's
    /// trace (the link then checks that the span belongs to that trace).
    pub fn allows(&self, trace_id: &str, span_id: &str, message_id: &str, session_id: &str) -> Result<(), TokenError> {
        let within = |named: &str, scope: &str| named.is_empty() || named == scope;
        let names_one = !trace_id.is_empty() || !message_id.is_empty() || !session_id.is_empty();
        let ok = names_one
            && within(trace_id, &self.t)
            && within(message_id, &self.m)
            && within(session_id, &self.s)
            && (span_id.is_empty() || (!self.t.is_empty() && trace_id == self.t));
        if ok {
            Ok(())
        } else {
            let mut scope = Vec::new();
            if !self.t.is_empty() {
                scope.push(format!("trace {}", self.t));
            }
            if !self.m.is_empty() {
                scope.push(format!("message {}", self.m));
            }
            if !self.s.is_empty() {
                scope.push(format!("session {}", self.s));
            }
            Err(TokenError::OutOfScope(scope.join(", ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims { k: "k_1".into(), p: "shop".into(), exp: 2_000, t: "ab".repeat(16), m: String::new(), s: String::new() }
    }

    #[test]
    fn a_minted_token_verifies_and_scopes() {
        let token = mint("fwk_secret", &claims());
        let hash = hex::encode(Sha256::digest(b"fwk_secret"));
        let c = verify(&token, &hash, 1_000).unwrap();
        assert_eq!(c.p, "shop");
        assert!(c.allows(&"ab".repeat(16), "", "", "").is_ok());
        assert!(matches!(c.allows(&"cd".repeat(16), "", "", ""), Err(TokenError::OutOfScope(_))));
    }

    /// Issue 15, security: a token's signal may only target what the token names.
    #[test]
    fn a_token_never_reaches_a_target_outside_its_scope() {
        let session = Claims { t: String::new(), s: "sess-1".into(), ..claims() };
        assert!(session.allows("", "", "", "sess-1").is_ok());
        assert!(session.allows(&"cd".repeat(16), "", "", "sess-1").is_err(), "own session plus a victim's trace");
        assert!(session.allows("", "", "msg-9", "sess-1").is_err(), "own session plus another message");
        assert!(session.allows("", "00ff00ff00ff00ff", "", "sess-1").is_err(), "a span, with no trace in scope");
        let trace = claims();
        assert!(trace.allows(&"ab".repeat(16), "00ff00ff00ff00ff", "", "").is_ok(), "a span inside the token's trace");
        assert!(trace.allows("", "00ff00ff00ff00ff", "", "").is_err(), "a span without its trace");
        assert!(trace.allows(&"ab".repeat(16), "", "", "sess-other").is_err());
        assert!(trace.allows("", "", "", "").is_err(), "no target at all");
    }

    #[test]
    fn forged_expired_and_garbled_tokens_are_refused() {
        let hash = hex::encode(Sha256::digest(b"fwk_secret"));
        assert_eq!(verify(&mint("fwk_other", &claims()), &hash, 1_000), Err(TokenError::BadSignature));
        assert_eq!(verify(&mint("fwk_secret", &claims()), &hash, 3_000), Err(TokenError::Expired));
        // Claims edited after signing (another project) no longer match the signature.
        let token = mint("fwk_secret", &claims());
        let (_, sig) = token.strip_prefix(PREFIX).unwrap().split_once('.').unwrap();
        let forged = format!("{PREFIX}{}.{sig}", B64.encode(serde_json::to_vec(&Claims { p: "other".into(), ..claims() }).unwrap()));
        assert_eq!(verify(&forged, &hash, 1_000), Err(TokenError::BadSignature));
        assert!(matches!(verify("fwt_nope", &hash, 0), Err(TokenError::Malformed(_))));
        let unscoped = mint("fwk_secret", &Claims { t: String::new(), ..claims() });
        assert_eq!(verify(&unscoped, &hash, 1_000), Err(TokenError::NoScope));
    }
}
