//! The embeddings cache against the real local ClickHouse engine and the real model: a second run
//! embeds nothing and returns the same vectors, duplicates are embedded once, projects are apart.
//! Needs the model: `./setup.sh` (or `./setup.sh --only model`).

mod common;

use std::sync::Mutex;
use std::sync::OnceLock;

use common::TestDb;
use flywheel_analyzer::embed::{Embedder, MODEL_NAME, embed_cached, model_dir, text_hash};

fn embedder() -> &'static Embedder {
    static EMBEDDER: OnceLock<Embedder> = OnceLock::new();
    EMBEDDER.get_or_init(|| {
        let dir = Embedder::locate()
            .unwrap_or_else(|| panic!("the embedding model is not installed in {}: run ./setup.sh", model_dir().display()));
        Embedder::load(&dir).unwrap_or_else(|e| panic!("{e}"))
    })
}

/// Every `(done, total)` the progress callback saw.
#[derive(Default)]
struct Progress(Mutex<Vec<(usize, usize)>>);

impl Progress {
    fn report(&self, done: usize, total: usize) {
        self.0.lock().unwrap().push((done, total));
    }

    /// How many texts were embedded: the last report's total, which it has then reached.
    fn embedded(&self) -> usize {
        let seen = self.0.lock().unwrap();
        let &(done, total) = seen.last().expect("progress is reported at least once");
        assert_eq!(done, total, "{seen:?}");
        assert_eq!(seen.first(), Some(&(0, total)), "{seen:?}");
        assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "progress only moves forward: {seen:?}");
        total
    }
}

async fn count(store: &flywheel_schemas::Store, project: &str) -> u64 {
    store.query("SELECT count() FROM embeddings FINAL WHERE project_id = ?").bind(project).fetch_one().await.unwrap()
}

fn bits(vectors: &[Vec<f32>]) -> Vec<u32> {
    vectors.iter().flatten().map(|x| x.to_bits()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_run_embeds_nothing_and_returns_the_same_vectors() {
    let db = TestDb::new("embeddings_cache");
    let store = db.migrated().await;
    // 300 distinct texts (more than one embedding chunk) plus duplicates, the empty string twice.
    let mut texts: Vec<String> = (0..300).map(|i| format!("tool call {i} failed: upstream returned HTTP {}", 400 + i % 100)).collect();
    texts.extend(["", "", "the weather in Paris is sunny", "the weather in Paris is sunny"].map(String::from));
    texts.push(texts[7].clone());
    let distinct = 302;

    let first_progress = Progress::default();
    let first = embed_cached(&store, "p1", embedder(), &texts, &|d, t| first_progress.report(d, t)).await.unwrap();
    assert_eq!(first_progress.embedded(), distinct);
    assert_eq!(count(&store, "p1").await, distinct as u64);
    assert_eq!(first.len(), texts.len());
    assert!(first.iter().all(|v| v.len() == 384));
    // Duplicates get the vector of their text, in input order.
    assert_eq!(bits(&first[300..301]), bits(&first[301..302]));
    assert_eq!(bits(&first[7..8]), bits(&first[304..305]));
    assert_ne!(bits(&first[0..1]), bits(&first[1..2]));

    // The stored rows carry the model and the text's hash.
    let (model, hash): (String, String) = store
        .query("SELECT model, text_hash FROM embeddings WHERE project_id = 'p1' AND text_hash = ?")
        .bind(text_hash("the weather in Paris is sunny"))
        .fetch_one()
        .await
        .unwrap();
    assert_eq!((model.as_str(), hash.len()), (MODEL_NAME, 64));

    let second_progress = Progress::default();
    let second = embed_cached(&store, "p1", embedder(), &texts, &|d, t| second_progress.report(d, t)).await.unwrap();
    assert_eq!(second_progress.embedded(), 0);
    assert_eq!(bits(&first), bits(&second));
    assert_eq!(count(&store, "p1").await, distinct as u64);

    // A partly new input embeds only what is new, and agrees with the cache on the rest.
    let mut more = texts[..10].to_vec();
    more.push("a brand new failure: the model refused to answer".to_string());
    let third_progress = Progress::default();
    let third = embed_cached(&store, "p1", embedder(), &more, &|d, t| third_progress.report(d, t)).await.unwrap();
    assert_eq!(third_progress.embedded(), 1);
    assert_eq!(bits(&third[..10]), bits(&first[..10]));
    assert_eq!(count(&store, "p1").await, distinct as u64 + 1);

    // Vectors computed through the cache are those of the embedder itself.
    let direct = embedder().embed(&[texts[3].as_str()]).unwrap();
    let diff = direct[0].iter().zip(&first[3]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(diff < 1e-5, "{diff}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projects_do_not_share_the_cache() {
    let db = TestDb::new("embeddings_projects");
    let store = db.migrated().await;
    let texts: Vec<String> = ["refund policy for damaged items", "can I get my money back for a broken product"].map(String::from).to_vec();

    let a = Progress::default();
    embed_cached(&store, "alpha", embedder(), &texts, &|d, t| a.report(d, t)).await.unwrap();
    assert_eq!(a.embedded(), 2);

    let b = Progress::default();
    embed_cached(&store, "beta", embedder(), &texts, &|d, t| b.report(d, t)).await.unwrap();
    assert_eq!(b.embedded(), 2, "another project's vectors are not reused");
    assert_eq!((count(&store, "alpha").await, count(&store, "beta").await), (2, 2));

    let empty = Progress::default();
    assert!(embed_cached(&store, "alpha", embedder(), &[], &|d, t| empty.report(d, t)).await.unwrap().is_empty());
    assert_eq!(empty.embedded(), 0);
}
