//! PLACEHOLDER — being written (see docs/conventions.md).

use super::{Draft, SpanView};

pub fn read(_span: &SpanView<'_>, _d: &mut Draft) {}
