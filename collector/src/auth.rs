//! Project API keys. A key is shown once at creation and stored as its SHA-256; every request
//! is authenticated to exactly one project, and every row it produces carries that project.
//!
//! Keys are cached in memory. An unknown key (or the unknown key id of a feedback token) is
//! looked up alone, once: a key created a moment ago works at once, and a refused one is
//! refused from memory for [`MISS_TTL`], so that a client retrying bad keys cannot load the
//! database. The whole cache is re-read on a timer ([`Authenticator::refresh_forever`],
//! `[collector] key_refresh_secs`, 30 by default) — at most one re-read at a time, and none
//! within [`MIN_REFRESH`] of the last — so that a revocation takes effect without a restart,
//! for keys and for the feedback tokens they signed alike.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use flywheel_schemas::rows::ApiKeyRow;
use flywheel_schemas::{Store, StoreError};
use rand::Rng;

use crate::deadline::{QUERY, within};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::sync::RwLock;

const KEY_PREFIX: &str = "fwk_";
/// How long a refused key or key id is refused from memory.
pub const MISS_TTL: Duration = Duration::from_secs(30);
/// Re-reads of the whole key table are at least this far apart, however many requests ask.
const MIN_REFRESH: Duration = Duration::from_secs(1);
/// Refused keys remembered at most (a flood of random keys clears the memory, not the bound).
const MAX_MISSES: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "missing API key: send `Authorization: Bearer <key>` or `x-flywheel-key: <key>` (create one with `flywheel keys create --project NAME`)"
    )]
    Missing,
    #[error("unknown API key: check the key, or create one with `flywheel keys create --project NAME`")]
    Unknown,
    #[error("this API key was revoked: create a new one with `flywheel keys create --project NAME`")]
    Revoked,
    #[error("cannot check the API key now: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Token(String),
}

/// How requests are authenticated.
#[derive(Debug, Clone)]
pub enum AuthMode {
    /// Project API keys (the default of `flywheel serve`).
    Keys,
    /// No authentication: every request belongs to `project`. For the local demo only.
    Open { project: String },
}

#[derive(Debug, Clone)]
struct Entry {
    project: String,
    key_id: String,
    revoked: bool,
    /// The Ed25519 public key of the key's feedback tokens (hex); empty until registered.
    public_key: String,
}

impl From<KeyRow> for (String, Entry) {
    fn from(r: KeyRow) -> (String, Entry) {
        (r.key_hash, Entry { project: r.project_id, key_id: r.key_id, revoked: r.revoked, public_key: r.public_key })
    }
}

/// The key a request was authenticated with.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyInfo {
    pub project: String,
    pub key_id: String,
    pub key_hash: String,
}

pub struct Authenticator {
    mode: AuthMode,
    refresh_every: Duration,
    store: Store,
    cache: RwLock<Cache>,
    /// Held while the key table is re-read: one re-read at a time.
    refreshing: tokio::sync::Mutex<()>,
}

struct Cache {
    keys: HashMap<String, Entry>,
    /// Key hashes, and `id:`-prefixed key ids of tokens, refused recently.
    misses: HashMap<String, Instant>,
    loaded_at: Option<Instant>,
}

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct KeyRow {
    project_id: String,
    key_id: String,
    key_hash: String,
    revoked: bool,
    public_key: String,
}

/// Keys with the public key of their tokens, if registered; `{where}` filters the keys.
const KEY_QUERY: &str = "SELECT k.project_id AS project_id, k.key_id AS key_id, k.key_hash AS key_hash, \
     k.revoked_at IS NOT NULL AS revoked, t.public_key AS public_key \
     FROM (SELECT * FROM api_keys FINAL {where}) AS k \
     LEFT JOIN (SELECT project_id, key_id, argMax(public_key, registered_at) AS public_key FROM token_keys GROUP BY project_id, key_id) AS t \
       ON t.project_id = k.project_id AND t.key_id = k.key_id";

fn key_query(filter: &str) -> String {
    KEY_QUERY.replace("{where}", filter)
}

impl Authenticator {
    pub fn new(mode: AuthMode, store: Store, refresh_every: Duration) -> Authenticator {
        Authenticator {
            mode,
            refresh_every,
            store,
            cache: RwLock::new(Cache { keys: HashMap::new(), misses: HashMap::new(), loaded_at: None }),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// The project of a request, from its key (`None` when the request carried none).
    pub async fn project(&self, key: Option<&str>) -> Result<String, AuthError> {
        if let AuthMode::Open { project } = &self.mode {
            return Ok(project.clone());
        }
        self.key(key).await.map(|k| k.project)
    }

    /// The key a request's memory counts against in the budget of bodies in flight
    /// ([`crate::receiver::budget`]): the key it presented, once authenticated. In open mode
    /// any key passes unchecked, so none counts: made-up keys must not get a share each.
    pub fn budget_key<'k>(&self, presented: Option<&'k str>) -> Option<&'k str> {
        match self.mode {
            AuthMode::Keys => presented,
            AuthMode::Open { .. } => None,
        }
    }

    /// The key of a request, checked. In open mode there is no key: `Missing`.
    ///
    /// A key that has no public key for its feedback tokens yet (created before they were
    /// signed with Ed25519) gets it registered here, the one moment the collector sees the key.
    pub async fn key(&self, key: Option<&str>) -> Result<KeyInfo, AuthError> {
        let key = key.map(str::trim).filter(|k| !k.is_empty()).ok_or(AuthError::Missing)?;
        let info = self.checked_key(key).await?;
        let registered = self.cache.read().await.keys.get(&info.key_hash).is_none_or(|e| !e.public_key.is_empty());
        if !registered {
            self.register_public_key(key, &info).await;
        }
        Ok(info)
    }

    /// Stores the public key of `key`'s tokens. A failure is logged: the request goes on, and
    /// the next one tries again.
    async fn register_public_key(&self, key: &str, info: &KeyInfo) {
        let row = flywheel_schemas::rows::TokenKeyRow {
            project_id: info.project.clone(),
            key_id: info.key_id.clone(),
            public_key: crate::signals::token::public_key(key),
            registered_at: OffsetDateTime::now_utc(),
        };
        match within(&self.store, QUERY, self.store.insert("token_keys", std::slice::from_ref(&row))).await {
            Ok(()) => {
                tracing::info!(key_id = %info.key_id, "registered the public key of this API key's feedback tokens");
                if let Some(entry) = self.cache.write().await.keys.get_mut(&info.key_hash) {
                    entry.public_key = row.public_key;
                }
            }
            Err(e) => tracing::warn!(key_id = %info.key_id, error = %e, "cannot register the public key of feedback tokens yet"),
        }
    }

    async fn checked_key(&self, key: &str) -> Result<KeyInfo, AuthError> {
        let hash = hash_key(key);
        let unavailable = |e: StoreError| AuthError::Unavailable(e.to_string());
        {
            let cache = self.cache.read().await;
            let fresh = cache.loaded_at.is_some_and(|t| t.elapsed() < self.refresh_every);
            match cache.keys.get(&hash) {
                Some(entry) if fresh => return entry_result(entry, &hash),
                Some(_) => {}
                // A key refused recently is refused again without a query, so that a client
                // retrying bad keys cannot load the database.
                None if cache.misses.get(&hash).is_some_and(|t| t.elapsed() < MISS_TTL) => return Err(AuthError::Unknown),
                None if fresh => {
                    // A key created since the last refresh must work at once: look it up alone.
                    drop(cache);
                    return self.lookup(&hash).await.map_err(unavailable)?;
                }
                None => {}
            }
        }
        if let Err(e) = self.refresh().await {
            // ClickHouse is away: a key known from an earlier read still authenticates (the
            // write-ahead log takes the data meanwhile); an unknown one cannot be checked.
            let cache = self.cache.read().await;
            return match cache.keys.get(&hash) {
                Some(entry) => {
                    tracing::warn!(error = %e, "API keys could not be re-read; using the cached ones");
                    entry_result(entry, &hash)
                }
                None => Err(unavailable(e)),
            };
        }
        let found = self.cache.read().await.keys.get(&hash).map(|e| entry_result(e, &hash));
        match found {
            Some(result) => result,
            // Not in the table as last read (the re-read may have been skipped as too recent):
            // look it up alone, once; a miss is then remembered.
            None => self.lookup(&hash).await.map_err(unavailable)?,
        }
    }

    /// Verifies a feedback token: signed by a live key of the project it names, unexpired.
    pub async fn token(&self, token: &str) -> Result<crate::signals::token::Claims, AuthError> {
        use crate::signals::token;
        let (claims, _, _) = token::peek(token).map_err(|e| AuthError::Token(e.to_string()))?;
        let no_key = || AuthError::Token("the feedback token names a key that does not exist".into());
        let miss = format!("id:{}", claims.k);
        let (key, stale) = {
            let cache = self.cache.read().await;
            if cache.misses.get(&miss).is_some_and(|t| t.elapsed() < MISS_TTL) {
                return Err(no_key());
            }
            let stale = cache.loaded_at.is_none_or(|t| t.elapsed() >= self.refresh_every);
            (cache.keys.iter().find(|(_, e)| e.key_id == claims.k).map(|(h, e)| (h.clone(), e.clone())), stale)
        };
        if stale && key.is_some() {
            // A revocation must reach tokens too: a stale cache is re-read (rate-limited).
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "API keys could not be re-read; checking the token against the cached ones");
            }
        }
        let key = match key {
            Some((hash, _)) if stale => {
                let cache = self.cache.read().await;
                cache.keys.get(&hash).map(|e| (hash.clone(), e.clone()))
            }
            other => other,
        };
        let (hash, entry) = match key {
            Some(k) => k,
            None => self.lookup_id(&claims.k).await.map_err(|e| AuthError::Unavailable(e.to_string()))?.ok_or_else(no_key)?,
        };
        entry_result(&entry, &hash)?;
        if entry.public_key.is_empty() {
            return Err(AuthError::Token(
                "the feedback token's key has no registered public key: it was created before tokens were signed with Ed25519 \
                 and has not authenticated a request since; send any request with the key (or mint through /v1/feedback-tokens) \
                 and mint the token again"
                    .into(),
            ));
        }
        if entry.project != claims.p {
            return Err(AuthError::Token(format!(
                "the feedback token claims project `{}` but its key belongs to another project",
                claims.p
            )));
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        token::verify(token, &entry.public_key, now).map_err(|e| AuthError::Token(e.to_string()))
    }

    async fn lookup(&self, hash: &str) -> Result<Result<KeyInfo, AuthError>, StoreError> {
        crate::metrics::count(crate::metrics::Event::KeyLookup);
        let row: Option<KeyRow> =
            within(&self.store, QUERY, self.store.query(&key_query("WHERE key_hash = ?")).bind(hash).fetch_optional()).await?;
        let mut cache = self.cache.write().await;
        Ok(match row {
            Some(r) => {
                let (key_hash, entry) = r.into();
                let result = entry_result(&entry, hash);
                cache.keys.insert(key_hash, entry);
                result
            }
            None => {
                remember_miss(&mut cache, hash.to_string());
                Err(AuthError::Unknown)
            }
        })
    }

    /// The key of id `key_id`, looked up alone; remembered as refused when there is none.
    async fn lookup_id(&self, key_id: &str) -> Result<Option<(String, Entry)>, StoreError> {
        crate::metrics::count(crate::metrics::Event::KeyLookup);
        let query = self.store.query(&key_query("WHERE key_id = ?")).bind(key_id);
        let row: Option<KeyRow> = within(&self.store, QUERY, query.fetch_optional()).await?;
        let mut cache = self.cache.write().await;
        Ok(match row {
            Some(r) => {
                let (key_hash, entry): (String, Entry) = r.into();
                cache.keys.insert(key_hash.clone(), entry.clone());
                Some((key_hash, entry))
            }
            None => {
                remember_miss(&mut cache, format!("id:{key_id}"));
                None
            }
        })
    }

    /// Re-reads the key table every `key_refresh_secs`, forever: revocations take effect within
    /// that delay for keys and tokens, whatever the traffic.
    pub async fn refresh_forever(&self) {
        if matches!(self.mode, AuthMode::Open { .. }) {
            return;
        }
        let mut tick = tokio::time::interval(self.refresh_every.max(MIN_REFRESH));
        loop {
            tick.tick().await;
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "API keys could not be re-read; the cached ones stay in use");
            }
        }
    }

    async fn refresh(&self) -> Result<(), StoreError> {
        let _one_at_a_time = self.refreshing.lock().await;
        let min = MIN_REFRESH.min(self.refresh_every);
        if self.cache.read().await.loaded_at.is_some_and(|t| t.elapsed() < min) {
            return Ok(()); // re-read a moment ago, maybe while this call waited for the lock
        }
        crate::metrics::count(crate::metrics::Event::KeyTableRead);
        let rows: Vec<KeyRow> = within(&self.store, QUERY, self.store.query(&key_query("")).fetch_all()).await?;
        let mut cache = self.cache.write().await;
        cache.keys = rows.into_iter().map(Into::into).collect();
        // A refused key stays refused (keys are random: no one can present a key before it is
        // created); a refused key id may be a key created since.
        cache.misses.retain(|k, _| !k.starts_with("id:"));
        cache.loaded_at = Some(Instant::now());
        Ok(())
    }
}

fn remember_miss(cache: &mut Cache, key: String) {
    if cache.misses.len() >= MAX_MISSES {
        cache.misses.retain(|_, t| t.elapsed() < MISS_TTL);
        if cache.misses.len() >= MAX_MISSES {
            cache.misses.clear();
        }
    }
    cache.misses.insert(key, Instant::now());
}

fn entry_result(entry: &Entry, hash: &str) -> Result<KeyInfo, AuthError> {
    if entry.revoked {
        Err(AuthError::Revoked)
    } else {
        Ok(KeyInfo { project: entry.project.clone(), key_id: entry.key_id.clone(), key_hash: hash.to_string() })
    }
}

pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The key carried by a request: `Authorization: Bearer <key>` or `x-flywheel-key: <key>`.
pub fn key_from_headers(authorization: Option<&str>, x_flywheel_key: Option<&str>) -> Option<String> {
    if let Some(k) = x_flywheel_key {
        return Some(k.trim().to_string());
    }
    let auth = authorization?.trim();
    let (scheme, rest) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim().to_string())
}

fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

/// A new key for `project`: stored hashed, returned once in clear.
pub async fn create_key(store: &Store, project: &str, name: &str) -> Result<(String, ApiKeyRow), StoreError> {
    if project.trim().is_empty() {
        return Err(StoreError::Config("the project name must not be empty".into()));
    }
    let key = format!("{KEY_PREFIX}{}", random_token(40));
    let now = OffsetDateTime::now_utc();
    let row = ApiKeyRow {
        project_id: project.to_string(),
        key_id: format!("k_{}", random_token(12)),
        key_hash: hash_key(&key),
        name: name.to_string(),
        created_at: now,
        revoked_at: None,
        updated_at: now,
    };
    store.insert("api_keys", std::slice::from_ref(&row)).await?;
    let token_key = flywheel_schemas::rows::TokenKeyRow {
        project_id: row.project_id.clone(),
        key_id: row.key_id.clone(),
        public_key: crate::signals::token::public_key(&key),
        registered_at: now,
    };
    store.insert("token_keys", std::slice::from_ref(&token_key)).await?;
    Ok((key, row))
}

/// Revokes a key by id; returns the revoked row, or `None` if there is no such key.
pub async fn revoke_key(store: &Store, key_id: &str) -> Result<Option<ApiKeyRow>, StoreError> {
    let Some(mut row) =
        store.query("SELECT ?fields FROM api_keys FINAL WHERE key_id = ?").bind(key_id).fetch_optional::<ApiKeyRow>().await?
    else {
        return Ok(None);
    };
    let now = OffsetDateTime::now_utc();
    row.revoked_at = Some(now);
    row.updated_at = now;
    store.insert("api_keys", std::slice::from_ref(&row)).await?;
    Ok(Some(row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_either_header() {
        assert_eq!(key_from_headers(Some("Bearer fwk_abc"), None).as_deref(), Some("fwk_abc"));
        assert_eq!(key_from_headers(Some("bearer  fwk_abc "), None).as_deref(), Some("fwk_abc"));
        assert_eq!(key_from_headers(Some("Basic dXNlcg=="), None), None);
        assert_eq!(key_from_headers(None, Some("fwk_x")).as_deref(), Some("fwk_x"));
        assert_eq!(key_from_headers(None, None), None);
    }

    #[test]
    fn generated_keys_are_long_random_and_prefixed() {
        let a = format!("{KEY_PREFIX}{}", random_token(40));
        let b = format!("{KEY_PREFIX}{}", random_token(40));
        assert_ne!(a, b);
        assert_eq!(a.len(), 44);
        assert_eq!(hash_key(&a).len(), 64);
    }
}
