//! Eval export (`flywheel export evals`): failure patterns become eval cases a team keeps.
//!
//! Contract: one case per representative failing call of a pattern (diverse within the pattern,
//! see [`select`]), with the input the model got, the bad output for reference, the failure
//! reasons and signals, the expected behaviour when a user corrected the answer, and the
//! provenance. Every case written is recorded in `eval_exports` (per format), and a case already
//! exported in a format is not exported again in it unless `again` is set. `append_to` merges
//! into an existing file without duplicating a case already in it. Nothing is written when
//! there is nothing new (an existing `out` file is left as it is).
//!
//! Non-goals: no LLM call, no rewriting of existing eval files beyond appending records.

pub mod case;
pub mod expect;
pub mod formats;
pub mod load;
pub mod select;

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use flywheel_schemas::rows::{EvalExportRow, PatternRow};
use flywheel_schemas::{Store, StoreError, queries};
use serde::Deserialize;
use time::OffsetDateTime;

pub use case::EvalCase;
pub use formats::EvalFormat;
pub use select::Representation;

/// Default cases per pattern.
pub const DEFAULT_MAX_PER_PATTERN: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Options(String),
    #[error("no pattern `{pattern}` in project `{project}`: list the patterns with `flywheel patterns --project {project}`")]
    UnknownPattern { project: String, pattern: String },
    #[error(
        "pattern `{pattern}` is an operations failure ({label}): it makes no behaviour eval, since a correct answer fails it too; \
         add --include-ops to export it as availability and latency checks"
    )]
    OperationsPattern { pattern: String, label: String },
    #[error("cannot append to {path}: {reason}")]
    AppendTo { path: PathBuf, reason: String },
    #[error("{0}")]
    Append(String),
    #[error("cannot render the cases: {0}")]
    Render(String),
    #[error("cannot write {path}: {source} ({})", crate::export::write_hint(source))]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
}

/// Which patterns to export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Pattern(String),
    /// Triage state `new` or `acknowledged`, and not resolved.
    AllOpen,
}

#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The project; `None` picks the only project with data (an error when there are several).
    pub project: Option<String>,
    pub selection: Selection,
    pub format: EvalFormat,
    pub max_per_pattern: usize,
    /// Where to write; default `./evals/<format's file name>`. Ignored with `append_to`.
    pub out: Option<PathBuf>,
    /// Merge into this existing (or new) file instead of writing `out`.
    pub append_to: Option<PathBuf>,
    /// Export cases already exported in this format too.
    pub again: bool,
    /// Operations patterns too (rate limits, timeouts, latency), as availability and latency
    /// checks. Off by default: they make no behaviour eval (a correct answer fails them too).
    pub operations: bool,
}

impl ExportOptions {
    pub fn new(selection: Selection, format: EvalFormat) -> ExportOptions {
        ExportOptions {
            project: None,
            selection,
            format,
            max_per_pattern: DEFAULT_MAX_PER_PATTERN,
            out: None,
            append_to: None,
            again: false,
            operations: false,
        }
    }

    /// The file the export writes to.
    pub fn path(&self) -> PathBuf {
        self.append_to.clone().or_else(|| self.out.clone()).unwrap_or_else(|| Path::new("evals").join(self.format.default_file_name()))
    }
}

/// What an export did; its `Display` is the one-line summary the CLI prints.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSummary {
    pub project: String,
    pub format: EvalFormat,
    pub path: PathBuf,
    /// Cases written.
    pub cases: Vec<EvalCase>,
    /// Patterns the cases come from / patterns considered.
    pub patterns_with_cases: usize,
    pub patterns: usize,
    /// Representative cases skipped because `eval_exports` has them in this format.
    pub already_exported: usize,
    /// Cases skipped because the `append_to` file already has them.
    pub already_in_file: usize,
    /// Patterns whose members were compared lexically (no complete embeddings).
    pub lexical_patterns: Vec<String>,
    pub written: bool,
}

impl fmt::Display for ExportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.cases.len();
        let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        if n > 0 {
            write!(
                f,
                "{} from {} → {} ({})",
                plural(n, "eval case"),
                plural(self.patterns_with_cases, "pattern"),
                self.path.display(),
                self.format
            )?;
        } else {
            write!(f, "no new eval cases from {} ({} not written)", plural(self.patterns, "pattern"), self.path.display())?;
        }
        let mut notes = Vec::new();
        if self.already_exported > 0 {
            notes.push(format!("{} already exported, use --again", self.already_exported));
        }
        if self.already_in_file > 0 {
            notes.push(format!("{} already in the file", self.already_in_file));
        }
        if !self.lexical_patterns.is_empty() {
            let mut ids: Vec<&str> = self.lexical_patterns.iter().take(3).map(String::as_str).collect();
            if self.lexical_patterns.len() > 3 {
                ids.push("…");
            }
            notes.push(format!(
                "diversity from lexical similarity for {} ({}): their members have no cached embeddings — `flywheel analyze` with the model caches them",
                plural(self.lexical_patterns.len(), "pattern"),
                ids.join(", ")
            ));
        }
        if !notes.is_empty() {
            write!(f, " ({})", notes.join("; "))?;
        }
        Ok(())
    }
}

/// Exports eval cases; see the module documentation for the contract.
pub async fn export_evals(store: &Store, opts: &ExportOptions) -> Result<ExportSummary, ExportError> {
    if opts.max_per_pattern == 0 {
        return Err(ExportError::Options("--max-per-pattern must be at least 1".into()));
    }
    let project = resolve_project(store, opts.project.as_deref()).await?;
    let patterns = select_patterns(store, &project, &opts.selection, opts.operations).await?;
    let path = opts.path();
    let mut cases: Vec<(EvalCase, String)> = Vec::new();
    let mut seen = HashSet::new();
    let mut lexical_patterns = Vec::new();
    for p in &patterns {
        let (picked, how) = representative_cases(store, &project, p, opts.max_per_pattern).await?;
        if how == Representation::Lexical && !picked.is_empty() {
            lexical_patterns.push(p.pattern_id.clone());
        }
        for c in picked {
            if seen.insert(c.id.clone()) {
                cases.push((c, p.pattern_id.clone()));
            }
        }
    }
    tracing::info!(project, patterns = patterns.len(), candidates = cases.len(), "eval export candidates");

    let mut already_exported = 0;
    if !opts.again && !cases.is_empty() {
        let ids: Vec<String> = cases.iter().map(|(c, _)| c.id.clone()).collect();
        let done = exported_ids(store, &project, opts.format, &ids).await?;
        let before = cases.len();
        cases.retain(|(c, _)| !done.contains(&c.id));
        already_exported = before - cases.len();
    }

    let mut already_in_file = 0;
    let mut content = None;
    if let Some(target) = &opts.append_to {
        let existing = match std::fs::read_to_string(target) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(ExportError::Read { path: target.clone(), source }),
        };
        let append_err = |e: ExportError| match e {
            ExportError::Append(reason) => ExportError::AppendTo { path: target.clone(), reason },
            other => other,
        };
        let keys = formats::existing_keys(opts.format, &existing).map_err(append_err)?;
        let before = cases.len();
        cases.retain(|(c, _)| !formats::case_keys(opts.format, c).iter().any(|k| keys.contains(k)));
        already_in_file = before - cases.len();
        if !cases.is_empty() {
            let new: Vec<EvalCase> = cases.iter().map(|(c, _)| c.clone()).collect();
            content = Some(formats::merge(opts.format, &existing, &new).map_err(append_err)?);
        }
    } else if !cases.is_empty() {
        let new: Vec<EvalCase> = cases.iter().map(|(c, _)| c.clone()).collect();
        content = Some(formats::render(opts.format, &new)?);
    }

    let written = content.is_some();
    if let Some(content) = content {
        write_atomically(&path, &content)?;
        record(store, &project, opts.format, &path, &cases).await?;
    }
    let patterns_with_cases = cases.iter().map(|(_, p)| p).collect::<HashSet<_>>().len();
    let summary = ExportSummary {
        project,
        format: opts.format,
        path,
        cases: cases.into_iter().map(|(c, _)| c).collect(),
        patterns_with_cases,
        patterns: patterns.len(),
        already_exported,
        already_in_file,
        lexical_patterns,
        written,
    };
    tracing::info!(%summary, "eval export done");
    Ok(summary)
}

/// The representative eval cases of one pattern (at most `k`), and how members were compared.
pub async fn representative_cases(
    store: &Store,
    project: &str,
    pattern: &PatternRow,
    k: usize,
) -> Result<(Vec<EvalCase>, Representation), ExportError> {
    let (calls, picked, how) = representative_calls(store, project, &pattern.pattern_id, k).await?;
    let pref = case::PatternRef { project, id: &pattern.pattern_id, label: &pattern.label };
    Ok((picked.into_iter().map(|i| EvalCase::build(&pref, &calls[i])).collect(), how))
}

/// The failing calls of a pattern's current members and the indices of at most `k` diverse ones.
pub async fn representative_calls(
    store: &Store,
    project: &str,
    pattern_id: &str,
    k: usize,
) -> Result<(Vec<case::FailingCall>, Vec<usize>, Representation), StoreError> {
    let members = queries::pattern_members(store, project, pattern_id).await?;
    let calls = load::failing_calls(store, project, &members).await?;
    let vectors = load::embeddings(store, project, &calls).await?;
    let texts: Vec<String> = calls.iter().map(|c| format!("{}\n{}", c.request_text(), c.output_text())).collect();
    let (picked, how) = select::representatives(&texts, vectors.as_ref().map(|(m, v)| (m.as_str(), v.as_slice())), k);
    Ok((calls, picked, how))
}

async fn select_patterns(store: &Store, project: &str, selection: &Selection, operations: bool) -> Result<Vec<PatternRow>, ExportError> {
    use flywheel_schemas::failure::Lane;
    let all = queries::current_patterns(store, project).await?;
    match selection {
        Selection::Pattern(id) => match all.into_iter().find(|p| &p.pattern_id == id) {
            Some(p) if !operations && Lane::of(&p) == Lane::Operations => {
                Err(ExportError::OperationsPattern { pattern: id.clone(), label: p.label.clone() })
            }
            Some(p) => Ok(vec![p]),
            None => Err(ExportError::UnknownPattern { project: project.into(), pattern: id.clone() }),
        },
        Selection::AllOpen => Ok(all.into_iter().filter(is_open).filter(|p| operations || Lane::of(p) == Lane::Behaviour).collect()),
    }
}

/// Open = still to be handled: triage state `new` or `acknowledged`, and not resolved.
pub fn is_open(p: &PatternRow) -> bool {
    matches!(p.status.as_str(), "new" | "regressed" | "acknowledged" | "") && p.trend != "resolved"
}

#[derive(clickhouse::Row, Deserialize)]
struct Id {
    case_hash: String,
}

async fn exported_ids(store: &Store, project: &str, format: EvalFormat, ids: &[String]) -> Result<HashSet<String>, StoreError> {
    let rows: Vec<Id> = store
        .query("SELECT case_hash FROM eval_exports FINAL WHERE project_id = ? AND format = ? AND has(?, case_hash)")
        .bind(project)
        .bind(format.name())
        .bind(ids)
        .fetch_all()
        .await?;
    Ok(rows.into_iter().map(|r| r.case_hash).collect())
}

async fn record(store: &Store, project: &str, format: EvalFormat, path: &Path, cases: &[(EvalCase, String)]) -> Result<(), StoreError> {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()).display().to_string();
    let now = OffsetDateTime::now_utc();
    let rows: Vec<EvalExportRow> = cases
        .iter()
        .map(|(c, pattern)| EvalExportRow {
            project_id: project.into(),
            case_hash: c.id.clone(),
            format: format.name().into(),
            pattern_id: pattern.clone(),
            trace_id: c.provenance.trace_id.clone(),
            span_id: c.provenance.span_id.clone(),
            path: path.clone(),
            exported_at: now,
        })
        .collect();
    store.insert("eval_exports", &rows).await
}

/// Writes `content` to `path` through a temporary file in the same directory and a rename, so a
/// reader never sees half a file. A path that is not a regular file — `/dev/stdout`, `/dev/null`,
/// a FIFO, a symbolic link — is written through: a rename would replace the device or the link
/// with a file (run as root, `--out /dev/null` replaced the machine's /dev/null).
pub fn write_atomically(path: &Path, content: &str) -> Result<(), ExportError> {
    let err = |source| ExportError::Write { path: path.to_path_buf(), source };
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && !meta.is_file()
        && !meta.is_dir()
    {
        return std::fs::write(path, content).map_err(err);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "out".into());
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, content).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// The project to work on: `given`, or the only project with calls (one rule for every command).
/// What to do about a file that cannot be written, by why.
pub fn write_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::IsADirectory => "that is a directory: give a file path",
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
            "check that the directory is writable, or choose another path"
        }
        std::io::ErrorKind::NotFound => "its directory does not exist",
        _ => "check the path and the free space",
    }
}

pub async fn resolve_project(store: &Store, given: Option<&str>) -> Result<String, StoreError> {
    flywheel_schemas::queries::resolve_project(store, given.filter(|p| !p.is_empty())).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn devices_and_links_are_written_through_not_replaced() {
        let dir = std::env::temp_dir().join(format!("flywheel-write-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("target.jsonl");
        std::fs::write(&target, "old").unwrap();
        let link = dir.join("link.jsonl");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link).unwrap();
        super::write_atomically(&link, "new").unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link is kept");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        super::write_atomically(std::path::Path::new("/dev/null"), "nothing").unwrap();
        assert!(!std::fs::metadata("/dev/null").unwrap().is_file(), "/dev/null is still a device");
        let plain = dir.join("plain.jsonl");
        super::write_atomically(&plain, "x").unwrap();
        assert_eq!(std::fs::read_to_string(&plain).unwrap(), "x");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
