//! The resolved flow written back as one self-contained graph file: what a run keeps as
//! its `graph.ron` when the flow was composed of several files.

use serde::ser::{Serialize, SerializeTuple, Serializer};

use super::{Doc, NodeDef};
use crate::error::{Error, Result, SourceFile};

impl Serialize for NodeDef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(4)?;
        t.serialize_element(&self.0)?;
        t.serialize_element(&self.1)?;
        t.serialize_element(&self.2)?;
        t.serialize_element(&self.3)?;
        t.end()
    }
}

/// `doc` as RON text that parses back to the same flow, headed by the files it came from.
pub fn flow_text(doc: &Doc, src: &SourceFile) -> Result<String> {
    let mut out = String::from("// The resolved flow of these files (extends and includes applied):\n");
    for (name, _, _) in src.files() {
        out.push_str(&format!("//   {name}\n"));
    }
    let cfg = ron::ser::PrettyConfig::new().struct_names(true).depth_limit(4).indentor("  ".to_string());
    let text = ron::ser::to_string_pretty(doc, cfg)
        .map_err(|e| Error::other("graph::write", format!("the resolved flow cannot be written as RON: {e}")))?;
    out.push_str(&text);
    out.push('\n');
    Ok(out)
}
