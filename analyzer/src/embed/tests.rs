//! Tests against the real model, installed by `./setup.sh` (or named by `FLYWHEEL_MODEL_DIR`).
//! A missing model fails these tests: it must never pass them silently.

use std::sync::OnceLock;

use super::*;

fn embedder() -> &'static Embedder {
    static EMBEDDER: OnceLock<Embedder> = OnceLock::new();
    EMBEDDER.get_or_init(|| {
        let dir = Embedder::locate().unwrap_or_else(|| {
            panic!("the embedding model is not installed in {}: run ./setup.sh (or set FLYWHEEL_MODEL_DIR)", model_dir().display())
        });
        Embedder::load(&dir).unwrap_or_else(|e| panic!("{e}"))
    })
}

fn embed_one(text: &str) -> Vec<f32> {
    embedder().embed(&[text]).unwrap().remove(0)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    // The vectors are unit length: the dot product is the cosine.
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

const LONG: &str = "the payment service timed out after 30 seconds; ";

fn samples() -> Vec<String> {
    let mut texts: Vec<String> = [
        "hello world",
        "",
        "refund policy for damaged items",
        "can I get my money back for a broken product",
        "the weather in Paris is sunny",
        "東京の天気は晴れです 🌤️",
        "tool call failed: get_order_status returned 404 {\"error\": \"order not found\"}",
        "   ",
        "🤖🤖🤖",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    texts.push(LONG.repeat(40));
    texts.extend((0..40).map(|i| format!("sample text number {i} with a few words about orders and refunds")));
    texts
}

#[test]
fn model_name_and_dimension() {
    assert_eq!(embedder().model_name(), "all-MiniLM-L6-v2");
    assert_eq!(embedder().dimension(), 384);
    assert_eq!(embed_one("hello world").len(), 384);
}

#[test]
fn empty_input_gives_no_vectors() {
    assert!(embedder().embed(&[]).unwrap().is_empty());
}

#[test]
fn vectors_are_unit_length_and_in_input_order() {
    let texts = samples();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let vectors = embedder().embed(&refs).unwrap();
    assert_eq!(vectors.len(), texts.len());
    for (text, v) in texts.iter().zip(&vectors) {
        assert_eq!(v.len(), 384, "{text:?}");
        assert!(v.iter().all(|x| x.is_finite()), "{text:?}");
        assert!((norm(v) - 1.0).abs() < 1e-5, "{text:?}: norm {}", norm(v));
    }
    // Input order, though batches are formed by length: each vector is its own text's.
    for (i, text) in texts.iter().enumerate().step_by(7) {
        assert!(cosine(&vectors[i], &embed_one(text)) > 0.99999, "{text:?}");
    }
}

#[test]
fn deterministic_to_the_bit() {
    let texts = samples();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let a = embedder().embed(&refs).unwrap();
    let b = embedder().embed(&refs).unwrap();
    let bits = |v: &Vec<Vec<f32>>| v.iter().flatten().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&b));
}

#[test]
fn batched_equals_one_by_one() {
    let texts = samples();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let batched = embedder().embed(&refs).unwrap();
    for (text, b) in refs.iter().zip(&batched) {
        let single = embed_one(text);
        let diff = single.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-5, "{text:?}: max difference {diff}");
    }
}

#[test]
fn similar_meanings_are_closer() {
    let refund = embed_one("refund policy for damaged items");
    let money_back = embed_one("can I get my money back for a broken product");
    let weather = embed_one("the weather in Paris is sunny");
    let (related, unrelated) = (cosine(&refund, &money_back), cosine(&refund, &weather));
    assert!(related > unrelated + 0.2, "related {related}, unrelated {unrelated}");
}

#[test]
fn long_texts_are_truncated_at_256_tokens() {
    // ~480 tokens: what is past token 256 does not count, as in sentence-transformers.
    let long = LONG.repeat(40);
    let longer = format!("{long} and then something completely different about the weather in Paris");
    let (a, b) = (embed_one(&long), embed_one(&longer));
    assert_eq!(a.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), b.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
    // Yet more than the tokenizer file's own 128 tokens count: cut at 128, ~180 tokens of the
    // same repeated sentence would give the same vector as ~480.
    let medium = embed_one(&LONG.repeat(20));
    assert_ne!(a.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), medium.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
}

#[test]
fn huge_texts_are_cut_before_tokenising() {
    // 2 MB: the vector is that of its first 256 tokens, and it comes back quickly.
    let huge = LONG.repeat(40_000);
    let started = std::time::Instant::now();
    let v = embed_one(&huge);
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(v, embed_one(&LONG.repeat(40)));
    assert_eq!(prefix("aé", 2), "a");
    assert_eq!(prefix("aé", 3), "aé");
    assert_eq!(prefix("", 3), "");
}

/// First components from an independent float64 numpy implementation of the model
/// (safetensors + the Python `tokenizers`, BERT, mean pooling, L2 normalisation), run on the same
/// files; "hello world" also matches sentence-transformers' published output for this model.
#[test]
fn matches_the_python_reference() {
    let reference: [(&str, [f32; 6]); 5] = [
        ("hello world", [-0.0344773, 0.0310232, 0.0067350, 0.0261090, -0.0393620, -0.1603025]),
        ("", [-0.1188384, 0.0482987, -0.0025481, -0.0110112, 0.0519508, 0.0102917]),
        ("refund policy for damaged items", [-0.0746510, 0.0643000, 0.1037212, 0.0187463, 0.0606421, 0.0137573]),
        ("東京の天気は晴れです 🌤️", [0.0863206, 0.1106603, 0.1094699, -0.0129526, -0.0493019, 0.0789762]),
        (&LONG.repeat(40), [-0.0210611, 0.0003884, -0.0821157, -0.0573568, -0.0397279, 0.0467237]),
    ];
    for (text, want) in reference {
        let got = embed_one(text);
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 2e-6, "{:?}: got {:?}, want {want:?}", &text[..text.len().min(20)], &got[..6]);
        }
    }
}

#[test]
fn text_hash_is_hex_sha256() {
    assert_eq!(text_hash(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_eq!(text_hash("hello world"), "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");
}

#[test]
fn a_missing_or_corrupt_model_says_to_run_setup() {
    let dir = std::env::temp_dir().join(format!("flywheel-embed-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let err = Embedder::load(&dir).unwrap_err().to_string();
    assert!(err.contains("model.safetensors") && err.contains("run ./setup.sh"), "{err}");

    let installed = Embedder::locate().expect("the embedding model is not installed: run ./setup.sh");
    for file in ["tokenizer.json", "config.json"] {
        std::fs::copy(installed.join(file), dir.join(file)).unwrap();
    }
    std::fs::write(dir.join("model.safetensors"), b"not a safetensors file").unwrap();
    let err = Embedder::load(&dir).unwrap_err().to_string();
    assert!(err.contains("model.safetensors") && err.contains("unusable") && err.contains("run ./setup.sh"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
