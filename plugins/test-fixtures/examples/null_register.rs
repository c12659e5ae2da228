//! A library whose declaration has the right ABI version but a null `register`
//! function: the host must refuse it without calling through the null pointer.

use std::ffi::c_void;

/// `PluginV1`'s layout with the function pointer as a raw (null) pointer.
#[repr(C)]
pub struct Declaration {
    abi_version: u32,
    api_version: u32,
    name: (*const u8, usize),
    version: (*const u8, usize),
    register: *const c_void,
}

// Immutable data.
unsafe impl Sync for Declaration {}

/// The current ABI version with a null `register`.
#[no_mangle]
pub static STACKFLOW_PLUGIN_V1: Declaration = Declaration {
    abi_version: stackflow_plugin_api::abi::ABI_VERSION,
    api_version: 1,
    name: (b"null_register".as_ptr(), 13),
    version: (b"0".as_ptr(), 1),
    register: std::ptr::null(),
};
