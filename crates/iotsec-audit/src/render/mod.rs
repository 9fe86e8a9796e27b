//! Renderers: one report, four formats. They return strings; the caller decides where they go.

mod html;
mod sarif;
mod text;

pub use html::html;
pub use sarif::sarif;
pub use text::text;

use crate::report::Report;

/// Pretty JSON of the report (it deserialises back to an equal [`Report`]).
pub fn json(report: &Report) -> String {
    // Serialising plain data with string keys cannot fail.
    serde_json::to_string_pretty(report).unwrap_or_default()
}
