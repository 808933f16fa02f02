//! Local sentence embeddings: all-MiniLM-L6-v2 on the CPU, with a cache in ClickHouse.
//!
//! Contract:
//! * The model is a directory with `model.safetensors`, `tokenizer.json` and `config.json`,
//!   installed by `./setup.sh` into `$FLYWHEEL_HOME/models/all-MiniLM-L6-v2` (or named by
//!   `FLYWHEEL_MODEL_DIR`). Nothing is downloaded at run time; a missing or corrupt file is an
//!   error that names the file and says to run `./setup.sh`.
//! * [`Embedder::embed`] gives one 384-dimensional, L2-normalised vector per text, in input order,
//!   identical to Python sentence-transformers up to float rounding (mean pooling over the
//!   attention mask, truncation at 256 tokens). The same input always gives the same bits.
//! * [`embed_cached`] embeds only texts whose vectors are not yet in the `embeddings` table for
//!   (project, model, SHA-256 of the text), stores the new ones, and returns all vectors in input
//!   order. The CPU work runs on tokio's blocking pool, never on the async workers.
//!
//! Non-goals: GPU, other models, fine-tuning. The vectors are an input to clustering, nothing more.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use flywheel_schemas::StoreError;
use flywheel_schemas::rows::EmbeddingRow;
use flywheel_schemas::store::Store;
use sha2::{Digest, Sha256};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// The model name, also the `model` column of the cache: a new model never reuses these vectors.
pub const MODEL_NAME: &str = "all-MiniLM-L6-v2";

/// The length of every vector.
pub const DIMENSION: usize = 384;

/// The files [`Embedder::load`] needs; `setup.sh` installs them (plus the licence and NOTICE).
pub const MODEL_FILES: [&str; 3] = ["model.safetensors", "tokenizer.json", "config.json"];

/// sentence-transformers' `max_seq_length` for this model (sentence_bert_config.json). The
/// shipped tokenizer.json says 128, which would silently cut texts Python embeds in full.
const MAX_TOKENS: usize = 256;

/// Bytes of a text handed to the tokenizer. It tokenises a whole text before truncating, and
/// LLM payloads can be megabytes; 256 tokens are ~1 KB of ordinary text, so only a text that is
/// almost all whitespace or control characters could need more than this before its 256th token.
const MAX_BYTES: usize = 64 * 1024;

/// Texts per forward pass: large enough to use both cores' matrix kernels well (~145 texts/s
/// against ~65 one by one), small enough that padding to the longest text wastes little.
const BATCH: usize = 32;

/// Texts per blocking task in [`embed_cached`]: one progress report every few seconds.
const CHUNK: usize = 256;

/// Hashes per cache lookup: ~700 KB of SQL, far below the store's 16 MB statement limit.
const LOOKUP_HASHES: usize = 10_000;

/// New vectors per INSERT: each INSERT makes a part, so not one per chunk; yet a run that is
/// interrupted keeps most of what it computed.
const INSERT_ROWS: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("the embedding model file {} is missing: run ./setup.sh to install {MODEL_NAME}", .0.display())]
    Missing(PathBuf),
    #[error("the embedding model file {} is unusable ({reason}): run ./setup.sh to reinstall {MODEL_NAME}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot tokenise a text for embedding: {0}")]
    Tokenize(String),
    #[error("embedding inference failed: {0}")]
    Inference(#[from] candle_core::Error),
    #[error("the embedding task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A loaded model. Cheap to clone (the weights are shared), `Send + Sync`, and stateless between
/// calls, so one instance can serve every thread.
#[derive(Clone)]
pub struct Embedder {
    inner: Arc<Inner>,
}

struct Inner {
    model: BertModel,
    tokenizer: Tokenizer,
    dimension: usize,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder").field("model", &MODEL_NAME).field("dimension", &self.inner.dimension).finish()
    }
}

/// Where the model is expected: `FLYWHEEL_MODEL_DIR` if set, else
/// `$FLYWHEEL_HOME/models/all-MiniLM-L6-v2`, whether or not it is installed there.
pub fn model_dir() -> PathBuf {
    match std::env::var_os("FLYWHEEL_MODEL_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => flywheel_schemas::engine::home().join("models").join(MODEL_NAME),
    }
}

/// Hex SHA-256 of the UTF-8 bytes: the cache key of a text.
pub fn text_hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

impl Embedder {
    /// [`model_dir`] when all the [`MODEL_FILES`] are there, else `None`.
    pub fn locate() -> Option<PathBuf> {
        let dir = model_dir();
        MODEL_FILES.iter().all(|f| dir.join(f).is_file()).then_some(dir)
    }

    /// Loads the model in `dir` (~0.15 s, ~190 MB). Checks what it can up front so that a broken
    /// install fails here, naming the file, rather than in the middle of a run.
    pub fn load(dir: &Path) -> Result<Embedder, EmbedError> {
        let started = Instant::now();
        for file in MODEL_FILES {
            if !dir.join(file).is_file() {
                return Err(EmbedError::Missing(dir.join(file)));
            }
        }
        let corrupt = |file: &str, reason: String| EmbedError::Corrupt { path: dir.join(file), reason };

        let config_text = std::fs::read_to_string(dir.join("config.json")).map_err(|e| corrupt("config.json", e.to_string()))?;
        let config: Config = serde_json::from_str(&config_text).map_err(|e| corrupt("config.json", e.to_string()))?;
        // The cache is keyed by MODEL_NAME: another model in this directory would mix vectors.
        if config.hidden_size != DIMENSION {
            return Err(corrupt("config.json", format!("hidden_size {} where {MODEL_NAME} has {DIMENSION}", config.hidden_size)));
        }

        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| corrupt("tokenizer.json", e.to_string()))?;
        // As sentence-transformers does: pad each batch to its longest text (the file's fixed
        // 128 would waste work on short texts) and truncate at 256 tokens (the file's 128 would
        // change the vectors of longer texts). The file's pad token and id stay.
        let padding = tokenizer.get_padding().cloned().unwrap_or_default();
        tokenizer.with_padding(Some(PaddingParams { strategy: PaddingStrategy::BatchLongest, ..padding }));
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: MAX_TOKENS, ..Default::default() }))
            .map_err(|e| corrupt("tokenizer.json", e.to_string()))?;

        // Read into memory rather than mmap: no `unsafe`, and re-running setup.sh while the
        // analyzer runs cannot pull the file from under a live mapping.
        let weights_path = dir.join("model.safetensors");
        let bytes = std::fs::read(&weights_path).map_err(|e| corrupt("model.safetensors", e.to_string()))?;
        let tensors =
            candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(|e| corrupt("model.safetensors", e.to_string()))?;
        drop(bytes);
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        let model = BertModel::load(vb, &config).map_err(|e| corrupt("model.safetensors", e.to_string()))?;

        tracing::info!(dir = %dir.display(), elapsed_ms = started.elapsed().as_millis() as u64, "loaded embedding model {MODEL_NAME}");
        Ok(Embedder { inner: Arc::new(Inner { model, tokenizer, dimension: config.hidden_size }) })
    }

    pub fn model_name(&self) -> &str {
        MODEL_NAME
    }

    /// 384.
    pub fn dimension(&self) -> usize {
        self.inner.dimension
    }

    /// L2-normalised vectors, in input order. Texts are batched by similar length (less
    /// padding); the batches depend only on the input, so the same input gives the same bits.
    /// A text's vector may differ in the last float bits with the other texts of its call.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut order: Vec<usize> = (0..texts.len()).collect();
        // Byte length is a cheap stand-in for token count; the sort is stable, so deterministic.
        order.sort_by_key(|&i| texts[i].len());
        let mut out = vec![Vec::new(); texts.len()];
        for batch in order.chunks(BATCH) {
            let batch_texts: Vec<&str> = batch.iter().map(|&i| prefix(texts[i], MAX_BYTES)).collect();
            for (&i, vector) in batch.iter().zip(self.embed_batch(&batch_texts)?) {
                out[i] = vector;
            }
        }
        Ok(out)
    }

    /// One forward pass: BERT, mean over the real tokens (attention mask), L2 normalisation.
    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let encodings = self.inner.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| EmbedError::Tokenize(e.to_string()))?;
        let (n, len) = (encodings.len(), encodings.first().map_or(0, |e| e.len()));
        let flat =
            |get: fn(&tokenizers::Encoding) -> &[u32]| -> Vec<u32> { encodings.iter().flat_map(|e| get(e).iter().copied()).collect() };
        let device = &Device::Cpu;
        let ids = Tensor::from_vec(flat(tokenizers::Encoding::get_ids), (n, len), device)?;
        let type_ids = Tensor::from_vec(flat(tokenizers::Encoding::get_type_ids), (n, len), device)?;
        let mask = Tensor::from_vec(flat(tokenizers::Encoding::get_attention_mask), (n, len), device)?;

        let hidden = self.inner.model.forward(&ids, &type_ids, Some(&mask))?; // (n, len, dim)
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (n, len, 1)
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?; // (n, dim)
        // The clamps are sentence-transformers' own (1e-9 on the token count, 1e-12 on the
        // norm): they only matter for degenerate input, but keep the results identical.
        let counts = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?; // (n, 1)
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12f32, f32::MAX)?;
        Ok(mean.broadcast_div(&norm)?.to_vec2::<f32>()?)
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn prefix(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Embeds `texts` through the `embeddings` cache (see the module doc): looks up the cached
/// vectors of (project, model, text hash) in chunks, embeds only the missing texts, each
/// distinct text once, stores them, and returns one vector per text in input order.
///
/// `progress(done, total)` counts texts to embed (cache misses, deduplicated): it is called once
/// with `(0, total)` before any embedding, even when `total` is 0, then after each chunk.
pub async fn embed_cached(
    store: &Store,
    project: &str,
    embedder: &Embedder,
    texts: &[String],
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Vec<Vec<f32>>, EmbedError> {
    let started = Instant::now();
    let model = embedder.model_name();
    let hashes: Vec<String> = texts.iter().map(|t| text_hash(t)).collect();

    // Distinct hashes, each with the first text that has it, in input order.
    let mut first: HashMap<&str, usize> = HashMap::with_capacity(hashes.len());
    let mut distinct: Vec<&str> = Vec::new();
    for (i, hash) in hashes.iter().enumerate() {
        first.entry(hash).or_insert_with(|| {
            distinct.push(hash);
            i
        });
    }

    let mut vectors: HashMap<String, Vec<f32>> = HashMap::with_capacity(distinct.len());
    for chunk in distinct.chunks(LOOKUP_HASHES) {
        let rows: Vec<EmbeddingRow> = store
            .query("SELECT ?fields FROM embeddings WHERE project_id = ? AND model = ? AND has(?, text_hash)")
            .bind(project)
            .bind(model)
            .bind(chunk)
            .fetch_all()
            .await?;
        for row in rows {
            // A vector of the wrong length can only come from a damaged row: embed it again.
            if row.vector.len() == embedder.dimension() {
                vectors.insert(row.text_hash, row.vector);
            }
        }
    }
    let cached = vectors.len();

    let mut missing: Vec<usize> = distinct.iter().filter(|h| !vectors.contains_key(**h)).map(|h| first[h]).collect();
    // Similar lengths in the same chunks (and so batches) pad less.
    missing.sort_by_key(|&i| (texts[i].len(), i));
    let total = missing.len();
    progress(0, total);

    let mut pending: Vec<EmbeddingRow> = Vec::new();
    let mut done = 0;
    for chunk in missing.chunks(CHUNK) {
        let chunk_texts: Vec<String> = chunk.iter().map(|&i| texts[i].clone()).collect();
        let worker = embedder.clone();
        let embedded = tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = chunk_texts.iter().map(String::as_str).collect();
            worker.embed(&refs)
        })
        .await
        .map_err(|e| EmbedError::Task(e.to_string()))??;

        let created_at = time::OffsetDateTime::now_utc();
        for (&i, vector) in chunk.iter().zip(embedded) {
            pending.push(EmbeddingRow {
                project_id: project.to_string(),
                model: model.to_string(),
                text_hash: hashes[i].clone(),
                vector: vector.clone(),
                created_at,
            });
            vectors.insert(hashes[i].clone(), vector);
        }
        done += chunk.len();
        progress(done, total);
        if pending.len() >= INSERT_ROWS {
            store.insert("embeddings", &pending).await?;
            pending.clear();
        }
    }
    if !pending.is_empty() {
        store.insert("embeddings", &pending).await?;
    }

    tracing::info!(
        project,
        texts = texts.len(),
        distinct = distinct.len(),
        cached,
        embedded = total,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "embeddings ready"
    );
    Ok(hashes.iter().map(|h| vectors[h].clone()).collect())
}

// The analyzer shares one embedder across threads and tasks.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Embedder>();
};

#[cfg(test)]
mod tests;
