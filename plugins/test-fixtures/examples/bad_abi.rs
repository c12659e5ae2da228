//! A library that declares itself a stackflow plugin of ABI version 999: the host must
//! read only the version and refuse it, showing both versions.

/// ABI version 999, then garbage the host must never read.
#[no_mangle]
pub static STACKFLOW_PLUGIN_V1: [u32; 4] = [999, 0xDEAD_BEEF, 0xDEAD_BEEF, 0xDEAD_BEEF];
