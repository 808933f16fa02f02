use flywheel_schemas::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AnalyzerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("detection rules: {0}")]
    Rules(String),
    #[error("the dataframe step `{step}` failed: {source}")]
    Frame { step: &'static str, source: polars::error::PolarsError },
    #[error("{0}")]
    Invalid(String),
    #[error("embedding: {0}")]
    Embedding(String),
    #[error("configuration: {0}")]
    Config(String),
}

impl AnalyzerError {
    pub fn frame(step: &'static str) -> impl FnOnce(polars::error::PolarsError) -> AnalyzerError {
        move |source| AnalyzerError::Frame { step, source }
    }
}
