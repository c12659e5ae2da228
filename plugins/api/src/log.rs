//! Log lines shown by the host, prefixed with the plugin's name. `debug` lines appear only
//! with `STACKFLOW_PLUGIN_DEBUG=1`. Before the host registered the plugin (unit tests) they
//! go to stderr.

use std::sync::atomic::{AtomicPtr, Ordering};

use crate::abi::{level, HostV1, Str};

static HOST: AtomicPtr<HostV1> = AtomicPtr::new(std::ptr::null_mut());

pub(crate) fn set_host(host: *const HostV1) {
    HOST.store(host as *mut HostV1, Ordering::Release);
}

/// The host table, once the plugin is registered.
pub(crate) fn host() -> Option<&'static HostV1> {
    let p = HOST.load(Ordering::Acquire);
    // SAFETY: the host table lives for the whole process (ABI rule).
    (!p.is_null()).then(|| unsafe { &*p })
}

fn emit(lvl: u32, msg: &str) {
    match host() {
        // SAFETY: live table; the message outlives the call.
        Some(h) => unsafe { (h.log)(h.plugin, lvl, Str::new(msg)) },
        None => eprintln!("{msg}"),
    }
}

/// A debug line.
pub fn debug(msg: &str) {
    emit(level::DEBUG, msg);
}

/// An informational line.
pub fn info(msg: &str) {
    emit(level::INFO, msg);
}

/// A warning.
pub fn warn(msg: &str) {
    emit(level::WARN, msg);
}
