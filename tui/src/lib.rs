//! flywheel's terminal UI (ratatui): overview → patterns → pattern → trace → span.
//!
//! Contract (DESIGN.md, TUI): reads ClickHouse through `flywheel-schemas` off the UI thread and
//! renders immutable snapshots; triage and export from the keyboard.
//!
//! Status: lands with issue #8.
