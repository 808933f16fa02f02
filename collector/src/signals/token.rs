//! Browser-safe feedback tokens: short-lived, signed, bound to one project and one target.
//!
//! A back end that holds a project API key mints a token for the answer it just rendered and
//! hands it to the browser, which posts signals with it and never sees a secret.
//!
//! The signature is Ed25519. The signing key is derived from the API key alone
//! (seed = HMAC-SHA256(api_key, [`SEED_LABEL`])), so a back end mints tokens offline with no
//! round trip; the collector keeps only the public half (`token_keys`), registered when the key
//! is created or first authenticates a request. Nothing stored lets anyone sign: not the
//! public key, and not `api_keys.key_hash` — the first scheme keyed an HMAC with that very
//! hash, so anyone able to read the table could forge tokens; its tokens are refused.
//! Revoking the key invalidates its tokens.
//!
//! Format: `fwt_` + base64url(JSON claims) + `.` + base64url(Ed25519 signature of the claims).
//! Claims: `k` key id, `p` project, `exp` expiry (Unix seconds), and the scope: `t` trace id,
//! `m` message id and/or `s` session id (at least one).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What the signing seed is derived for: a key derived for another purpose never signs tokens.
pub const SEED_LABEL: &[u8] = b"flywheel feedback-token signing key v2";

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
    #[error(
        "the feedback token is signed with the retired HMAC scheme, which anyone able to read the key table could forge; mint a new one (docs/signals.md)"
    )]
    RetiredScheme,
    #[error("the feedback token expired; ask the back end for a new one")]
    Expired,
    #[error("the feedback token names no trace, message or session to judge")]
    NoScope,
    #[error("the feedback token does not allow signals on this target: it is scoped to {0}")]
    OutOfScope(String),
}

/// The Ed25519 key pair of an API key.
fn key_pair(api_key: &str) -> Ed25519KeyPair {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(api_key.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(SEED_LABEL);
    let seed = mac.finalize().into_bytes();
    Ed25519KeyPair::from_seed_unchecked(&seed).expect("any 32 bytes are an Ed25519 seed")
}

/// The public key that verifies the tokens of `api_key` (hex), as stored in `token_keys`.
pub fn public_key(api_key: &str) -> String {
    hex::encode(key_pair(api_key).public_key().as_ref())
}

/// Mints a token with the API key itself (what a back end does).
pub fn mint(api_key: &str, claims: &Claims) -> String {
    let payload = serde_json::to_vec(claims).expect("claims serialise");
    let sig = key_pair(api_key).sign(&payload);
    format!("{PREFIX}{}.{}", B64.encode(&payload), B64.encode(sig.as_ref()))
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

/// Verifies a token with the public key (hex) of the key it names, at time `now` (Unix
/// seconds).
pub fn verify(token: &str, public_key_hex: &str, now: i64) -> Result<Claims, TokenError> {
    let (claims, payload, sig) = peek(token)?;
    if sig.len() == 32 {
        return Err(TokenError::RetiredScheme);
    }
    let public_key = hex::decode(public_key_hex).map_err(|_| TokenError::BadSignature)?;
    UnparsedPublicKey::new(&ED25519, &public_key).verify(&payload, &sig).map_err(|_| TokenError::BadSignature)?;
    if claims.exp < now {
        return Err(TokenError::Expired);
    }
    if claims.t.is_empty() && claims.m.is_empty() && claims.s.is_empty() {
        return Err(TokenError::NoScope);
    }
    // Trace ids are stored and compared in lowercase; a token minted elsewhere (an SDK, a
    // server-side helper) may carry the id as the application printed it.
    let mut claims = claims;
    claims.t.make_ascii_lowercase();
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
        let c = verify(&token, &public_key("fwk_secret"), 1_000).unwrap();
        assert_eq!(c.p, "shop");
        assert!(c.allows(&"ab".repeat(16), "", "", "").is_ok());
        assert!(matches!(c.allows(&"cd".repeat(16), "", "", ""), Err(TokenError::OutOfScope(_))));
    }

    /// The offline minting of docs/signals.md (Python, `cryptography`) gives this very token
    /// and public key: the documented algorithm and this one are the same.
    #[test]
    fn the_documented_python_minting_gives_the_same_token() {
        assert_eq!(public_key("fwk_secret"), "f927421bfb9c3b42b72bc26fdf74b21a375de1ccdf01b682dbc004587fb7bafb");
        let from_python = "fwt_eyJrIjoia18xIiwicCI6InNob3AiLCJleHAiOjIwMDAsInQiOiJhYmFiYWJhYmFiYWJhYmFiYWJhYmFiYWJhYmFiYWJhYiJ9.\
                           bk0WFkiJ7eAqQ7UHvWQIAef3yaGnrMCjzekSMGLIkOMh76G_m9coZHyKkfOn8ef3JhSQHh_L7VJL7lK--IsADw";
        assert_eq!(mint("fwk_secret", &claims()), from_python);
        assert!(verify(from_python, &public_key("fwk_secret"), 1_000).is_ok());
    }

    /// Issue 15, security: what the collector stores about a key — its SHA-256 in `api_keys`,
    /// its public key in `token_keys` — signs nothing. A token signed the first way (an HMAC
    /// keyed by the stored hash: forgeable by any reader of the table) is refused.
    #[test]
    fn nothing_stored_can_sign_a_token() {
        let stored_hash = hex::encode(<Sha256 as sha2::Digest>::digest(b"fwk_secret"));
        let payload = serde_json::to_vec(&claims()).unwrap();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&hex::decode(&stored_hash).unwrap()).unwrap();
        mac.update(&payload);
        let forged = format!("{PREFIX}{}.{}", B64.encode(&payload), B64.encode(mac.finalize().into_bytes()));
        assert_eq!(verify(&forged, &public_key("fwk_secret"), 1_000), Err(TokenError::RetiredScheme));
        // Neither the hash nor the public key, used as an API key, gives the signing key.
        for stored in [stored_hash, public_key("fwk_secret")] {
            assert_eq!(verify(&mint(&stored, &claims()), &public_key("fwk_secret"), 1_000), Err(TokenError::BadSignature));
        }
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
        let key = public_key("fwk_secret");
        assert_eq!(verify(&mint("fwk_other", &claims()), &key, 1_000), Err(TokenError::BadSignature));
        assert_eq!(verify(&mint("fwk_secret", &claims()), &key, 3_000), Err(TokenError::Expired));
        // Claims edited after signing (another project) no longer match the signature.
        let token = mint("fwk_secret", &claims());
        let (_, sig) = token.strip_prefix(PREFIX).unwrap().split_once('.').unwrap();
        let forged = format!("{PREFIX}{}.{sig}", B64.encode(serde_json::to_vec(&Claims { p: "other".into(), ..claims() }).unwrap()));
        assert_eq!(verify(&forged, &key, 1_000), Err(TokenError::BadSignature));
        assert!(matches!(verify("fwt_nope", &key, 0), Err(TokenError::Malformed(_))));
        let unscoped = mint("fwk_secret", &Claims { t: String::new(), ..claims() });
        assert_eq!(verify(&unscoped, &key, 1_000), Err(TokenError::NoScope));
        assert_eq!(verify(&token, "", 1_000), Err(TokenError::BadSignature), "no public key registered");
    }
}
