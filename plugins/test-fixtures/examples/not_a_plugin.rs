//! A valid shared library without the `STACKFLOW_PLUGIN_V1` declaration.

/// Some unrelated export.
#[no_mangle]
pub extern "C" fn answer() -> i32 {
    42
}
