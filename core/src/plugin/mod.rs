//! The plugin host: loads `cdylib` plugins that speak stackflow's versioned C ABI
//! (`stackflow-plugin-api`) and adapts their kinds into the [`crate::registry::Registry`].
//!
//! Loading checks, in this order: the file exists; it is a shared library; it exports
//! `STACKFLOW_PLUGIN_V1`; the declaration's first field, the ABI version, equals ours
//! (nothing else is read before); the API revision it needs is one we provide. Then the
//! plugin describes its kinds once per process, and its kinds join the registry like
//! built-ins. A library is never unloaded: its code stays mapped until the process ends.

mod host;
mod kinds;

use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use stackflow_plugin_api::abi::{self, HostV1, PluginV1, RegistrarV1, Status, ERR, OK};

pub use kinds::{KindDoc, PluginBlockKind, PluginKind, PluginLossKind, PluginSamplerKind};

use crate::error::{Error, Result};
use crate::registry::{Registry, Source};

/// Environment variable with extra plugin paths (separated like `PATH`).
pub const PATH_VAR: &str = "STACKFLOW_PLUGIN_PATH";

/// Kind namespaces plugins may not use.
pub const RESERVED_NAMESPACES: [&str; 2] = ["core", "stackgan"];

/// A loaded plugin library as its kinds see it; leaked, like the library itself.
pub struct Library {
    /// The path as the user named it.
    pub path: PathBuf,
    /// The canonical path (one library per file and process).
    pub canonical: PathBuf,
    /// The plugin's name.
    pub name: String,
    /// The plugin's version.
    pub version: String,
    /// The ABI version it speaks.
    pub abi_version: u32,
    /// The host API revision it needs.
    pub api_version: u32,
    host: &'static HostV1,
}

/// A library and its kinds.
struct Loaded {
    lib: &'static Library,
    blocks: Vec<Arc<PluginBlockKind>>,
    losses: Vec<Arc<PluginLossKind>>,
    samplers: Vec<Arc<PluginSamplerKind>>,
}

/// What `plugins list` shows about a loaded library.
#[derive(Clone, Debug)]
pub struct PluginInfo {
    /// The path as the user named it.
    pub path: PathBuf,
    /// The plugin's name.
    pub name: String,
    /// The plugin's version.
    pub version: String,
    /// ABI version.
    pub abi_version: u32,
    /// API revision it needs.
    pub api_version: u32,
    /// Its kinds: (family, kind doc).
    pub kinds: Vec<(&'static str, KindDoc)>,
}

impl Loaded {
    /// Register every kind of the library in `registry` from `source`.
    fn add_to(&self, registry: &mut Registry, source: Source) -> Result<()> {
        for k in &self.blocks {
            registry.add_block(k.clone(), source.clone())?;
        }
        for k in &self.losses {
            registry.add_loss(k.clone(), source.clone())?;
        }
        for k in &self.samplers {
            registry.add_sampler(k.clone(), source.clone())?;
        }
        Ok(())
    }

    fn info(&self) -> PluginInfo {
        let kinds = self
            .blocks
            .iter()
            .map(|k| ("block", k.doc.clone()))
            .chain(self.losses.iter().map(|k| ("loss", k.doc.clone())))
            .chain(self.samplers.iter().map(|k| ("sampler", k.doc.clone())))
            .collect();
        let l = self.lib;
        PluginInfo {
            path: l.path.clone(),
            name: l.name.clone(),
            version: l.version.clone(),
            abi_version: l.abi_version,
            api_version: l.api_version,
            kinds,
        }
    }
}

/// Libraries loaded by this process, by canonical path.
static LOADED: Mutex<Vec<&'static Loaded>> = Mutex::new(Vec::new());

fn hint_paths() -> String {
    format!("plugins load only from paths you name: the graph file's `plugins` (relative to the file), `--plugin PATH`, or {PATH_VAR}")
}

/// Load the plugin library at `path` into `registry` (once per process; a library already
/// in this registry is skipped).
pub fn load(registry: &mut Registry, path: &Path) -> Result<PluginInfo> {
    let lib = open(path)?;
    let canonical_of = |s: &Source| match s {
        Source::Plugin(p) => std::fs::canonicalize(p).ok().is_some_and(|c| c == lib.lib.canonical),
        Source::BuiltIn => false,
    };
    let present = registry.blocks().iter().any(|(_, _, s)| canonical_of(s))
        || registry.losses().iter().any(|(_, _, s)| canonical_of(s))
        || registry.samplers().iter().any(|(_, _, s)| canonical_of(s));
    if !present {
        lib.add_to(registry, Source::Plugin(path.display().to_string()))?;
    }
    Ok(lib.info())
}

/// Open (or find already open) the library at `path`, with every check.
fn open(path: &Path) -> Result<&'static Loaded> {
    let shown = path.display().to_string();
    check_file(path, &shown)?;
    let canonical = std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
    let mut loaded = LOADED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(l) = loaded.iter().find(|l| l.lib.canonical == canonical) {
        return Ok(l);
    }
    // SAFETY: loading runs the library's initialisers; the user named this file as a plugin.
    let library = unsafe { libloading::Library::new(&canonical) }.map_err(|e| {
        Error::input("plugin::load_failed", format!("cannot load `{shown}` as a shared library: {e}"))
            .with_help("a plugin is a `cdylib` built with stackflow-plugin-api for this platform (e.g. target/debug/libstackflow_gan_losses.so)")
    })?;
    let (decl, abi_version) = declaration(&library, &shown)?;
    // SAFETY: the strings are the plugin's static data.
    let (name, version) = unsafe { (decl.name.to_string_lossy(), decl.version.to_string_lossy()) };
    // SAFETY: the plugin passed the version checks; every pointer outlives the call.
    let (pending, host) = register(&name, &shown, |h, r, e| unsafe { (decl.register)(h, r, e) })?;
    let lib: &'static Library = Box::leak(Box::new(Library {
        path: path.to_path_buf(),
        canonical,
        name,
        version,
        abi_version,
        api_version: decl.api_version,
        host,
    }));
    let entry = loaded_kinds(lib, pending);
    // Never unload: plugin code may be referenced by kinds and instances until exit.
    std::mem::forget(library);
    loaded.push(entry);
    Ok(entry)
}

/// The kinds of a registered library, leaked with it.
fn loaded_kinds(lib: &'static Library, pending: Pending) -> &'static Loaded {
    Box::leak(Box::new(Loaded {
        lib,
        blocks: pending.blocks.into_iter().map(|(doc, desc)| Arc::new(PluginBlockKind { lib, doc, desc })).collect(),
        losses: pending.losses.into_iter().map(|(doc, desc)| Arc::new(PluginLossKind { lib, doc, desc })).collect(),
        samplers: pending
            .samplers
            .into_iter()
            .map(|(doc, desc)| Arc::new(PluginSamplerKind { lib, doc, desc }))
            .collect(),
    }))
}

/// Compile a plugin's kinds into this binary. `kinds` registers them as the plugin's
/// `export_plugin!` does (`|r| r.block::<GatedConv>()`), and they run through the same
/// C-ABI adapters as a loaded library's: one kind written against
/// `stackflow-plugin-api` is the same code linked in or loaded with `--plugin`. They join
/// `registry` under the source `linked plugin `name``.
pub fn link(
    registry: &mut Registry,
    name: &str,
    version: &str,
    kinds: impl FnOnce(&mut stackflow_plugin_api::export::Registrar) -> stackflow_plugin_api::Result<()>,
) -> Result<PluginInfo> {
    let shown = format!("linked plugin `{name}`");
    // SAFETY: the API crate's own registration body, called with the pointers it expects.
    let (pending, host) =
        register(name, &shown, |h, r, e| unsafe { stackflow_plugin_api::export::register(h, r, e, kinds) })?;
    let lib: &'static Library = Box::leak(Box::new(Library {
        path: PathBuf::from(&shown),
        canonical: PathBuf::from(&shown),
        name: name.to_string(),
        version: version.to_string(),
        abi_version: abi::ABI_VERSION,
        api_version: abi::API_VERSION,
        host,
    }));
    let entry = loaded_kinds(lib, pending);
    entry.add_to(registry, Source::Plugin(shown))?;
    Ok(entry.info())
}

/// The path names a readable file.
fn check_file(path: &Path, shown: &str) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| {
        let (code, what) = match e.kind() {
            std::io::ErrorKind::NotFound => ("plugin::not_found", "does not exist"),
            _ => ("plugin::unreadable", "cannot be read"),
        };
        Error::input(code, format!("plugin library `{shown}` {what}"))
            .with_cause(e)
            .with_help(format!("build it with `cargo build -p <plugin crate>`; {}", hint_paths()))
    })?;
    if !meta.is_file() {
        return Err(
            Error::input("plugin::not_a_file", format!("plugin path `{shown}` is not a file")).with_help(hint_paths())
        );
    }
    Ok(())
}

/// The library's declaration, after checking its symbol, ABI version, `register` pointer
/// and API revision; with the ABI version it declares.
fn declaration(library: &libloading::Library, shown: &str) -> Result<(&'static PluginV1, u32)> {
    // SAFETY: only the symbol's address is taken here.
    let sym = unsafe { library.get::<*const u32>(abi::SYMBOL) }.map_err(|_| {
        Error::input(
            "plugin::not_a_plugin",
            format!("`{shown}` is not a stackflow plugin: it exports no `STACKFLOW_PLUGIN_V1`"),
        )
        .with_help("a plugin declares itself with `stackflow_plugin_api::export_plugin!(…)`")
    })?;
    let ptr: *const u32 = *sym;
    if ptr.is_null() {
        return Err(Error::input("plugin::not_a_plugin", format!("`{shown}` exports a null `STACKFLOW_PLUGIN_V1`")));
    }
    // SAFETY: every ABI version starts its declaration with a u32 version; read only that.
    let abi_version = unsafe { std::ptr::read_unaligned(ptr) };
    if abi_version != abi::ABI_VERSION {
        return Err(Error::input(
            "plugin::abi_mismatch",
            format!("`{shown}` speaks plugin ABI version {abi_version}, but this stackflow speaks ABI version {}", abi::ABI_VERSION),
        )
        .with_help(format!("rebuild the plugin against a stackflow-plugin-api with ABI version {}, or use a stackflow that speaks version {abi_version}", abi::ABI_VERSION)));
    }
    // SAFETY: the version matched, so the declaration has `PluginV1`'s layout; its function
    // pointer is checked as raw bytes before a `PluginV1` is formed.
    if unsafe { has_null_fn(ptr as *const u8, &[std::mem::offset_of!(PluginV1, register)]) } {
        return Err(Error::input("plugin::bad_declaration", format!("`{shown}` declares a null `register` function")));
    }
    // SAFETY: as above, and every function pointer is non-null; `open` never unloads the
    // library, so the declaration lives as long as the process.
    let decl: &PluginV1 = unsafe { &*(ptr as *const PluginV1) };
    if decl.api_version > abi::API_VERSION {
        return Err(Error::input(
            "plugin::api_mismatch",
            format!(
                "`{shown}` needs host API revision {}, but this stackflow provides revision {}",
                decl.api_version,
                abi::API_VERSION
            ),
        )
        .with_help("use a newer stackflow, or build the plugin against an older stackflow-plugin-api"));
    }
    Ok((decl, abi_version))
}

/// Run a plugin's registration (`call` with the host table, the registrar and the error
/// sink): the kinds it describes, checked, and the host table its kinds call back into.
fn register(
    name: &str,
    shown: &str,
    call: impl FnOnce(*const HostV1, *const RegistrarV1, *const abi::ErrorSinkV1) -> Status,
) -> Result<(Pending, &'static HostV1)> {
    let tag: &'static host::PluginTag = Box::leak(Box::new(host::PluginTag { name: name.to_string() }));
    let host = host::table(tag);
    let mut pending = Pending::default();
    let reg = RegistrarV1 {
        ctx: &mut pending as *mut Pending as *mut c_void,
        block: reg_block,
        loss: reg_loss,
        sampler: reg_sampler,
    };
    let mut r = kinds::Report::default();
    let err = r.sink();
    let st = call(host, &reg, &err);
    if st != OK {
        let what =
            if st == abi::PANIC { "panicked while registering its kinds" } else { "failed to register its kinds" };
        return Err(Error::input(
            if st == abi::PANIC { "plugin::panic" } else { "plugin::register_failed" },
            format!("plugin `{name}` ({shown}) {what}: {}", r.text()),
        ));
    }
    if let Some(bad) = pending.bad.first() {
        return Err(Error::input("plugin::bad_kind", format!("plugin `{name}` ({shown}): {bad}")).with_help(format!(
            "plugin kinds are namespaced `plugin_name.kind`; the namespaces {} are stackflow's",
            RESERVED_NAMESPACES.join(", ")
        )));
    }
    Ok((pending, host))
}

/// Kinds described during `register`, before the library is accepted.
#[derive(Default)]
struct Pending {
    blocks: Vec<(KindDoc, stackflow_plugin_api::abi::BlockKindV1)>,
    losses: Vec<(KindDoc, stackflow_plugin_api::abi::LossKindV1)>,
    samplers: Vec<(KindDoc, stackflow_plugin_api::abi::SamplerKindV1)>,
    bad: Vec<String>,
}

impl Pending {
    fn check(&mut self, family: &str, name: &str) -> bool {
        let ns = name.split('.').next().unwrap_or("");
        if RESERVED_NAMESPACES.contains(&ns) {
            self.bad.push(format!("{family} kind `{name}` uses the reserved namespace `{ns}`"));
            return false;
        }
        let dup = self
            .blocks
            .iter()
            .map(|k| &k.0.name)
            .chain(self.losses.iter().map(|k| &k.0.name))
            .chain(self.samplers.iter().map(|k| &k.0.name))
            .any(|n| n == name);
        if dup {
            self.bad.push(format!("{family} kind `{name}` is registered twice"));
            return false;
        }
        true
    }
}

fn copy_info<T>(desc: &T, info: impl Fn(&T) -> &abi::KindInfoV1) -> kinds::KindDoc {
    // SAFETY: called during the plugin's `register`, while its descriptor is live.
    unsafe { kinds::KindDoc::copy(info(desc)) }
}

/// Copy a descriptor the plugin passes to the registrar. Its strings are copied into a
/// [`KindDoc`] during the call and its `info` is never read again; the function pointers
/// stay valid because the library is never unloaded.
/// Whether any of the pointer-sized fields at `offsets` of the struct at `base` is null.
/// Reads them as raw pointers, so a null function pointer is found before a value of the
/// (non-nullable) `extern "C" fn` type exists.
unsafe fn has_null_fn(base: *const u8, offsets: &[usize]) -> bool {
    offsets.iter().any(|&o| std::ptr::read_unaligned(base.add(o) as *const *const c_void).is_null())
}

/// A kind descriptor whose function pointers are listed for the null check.
trait Descriptor: Sized {
    /// Offsets of every function-pointer field.
    fn fn_offsets() -> Vec<usize>;
}

macro_rules! descriptor {
    ($t:ty: $($f:ident),+) => {
        impl Descriptor for $t {
            fn fn_offsets() -> Vec<usize> {
                vec![$(std::mem::offset_of!($t, $f)),+]
            }
        }
    };
}
descriptor!(abi::BlockKindV1: configure, ports, infer, forward, release);
descriptor!(abi::LossKindV1: configure, needs, optional, d_loss, g_loss, release);
descriptor!(abi::SamplerKindV1: configure, sample, pairs, release);

/// Copy a descriptor the plugin passed, or `None` if it or one of its functions is null.
unsafe fn read_desc<T: Descriptor>(desc: *const T) -> Option<T> {
    if desc.is_null() || has_null_fn(desc as *const u8, &T::fn_offsets()) {
        return None;
    }
    Some(std::ptr::read(desc))
}

unsafe extern "C" fn reg_block(ctx: *mut c_void, desc: *const abi::BlockKindV1) -> Status {
    guard_reg(ctx, |p| {
        let Some(d) = read_desc(desc) else {
            p.bad.push("a kind descriptor is null or has a null function pointer".into());
            return OK;
        };
        let doc = copy_info(&d, |d| &d.info);
        if p.check("block", &doc.name) {
            p.blocks.push((doc, d));
        }
        OK
    })
}

unsafe extern "C" fn reg_loss(ctx: *mut c_void, desc: *const abi::LossKindV1) -> Status {
    guard_reg(ctx, |p| {
        let Some(d) = read_desc(desc) else {
            p.bad.push("a kind descriptor is null or has a null function pointer".into());
            return OK;
        };
        let doc = copy_info(&d, |d| &d.info);
        if p.check("loss", &doc.name) {
            p.losses.push((doc, d));
        }
        OK
    })
}

unsafe extern "C" fn reg_sampler(ctx: *mut c_void, desc: *const abi::SamplerKindV1) -> Status {
    guard_reg(ctx, |p| {
        let Some(d) = read_desc(desc) else {
            p.bad.push("a kind descriptor is null or has a null function pointer".into());
            return OK;
        };
        let doc = copy_info(&d, |d| &d.info);
        if d.role != abi::SAMPLER_NOISE && d.role != abi::SAMPLER_MISMATCH {
            p.bad.push(format!("sampler kind `{}` has unknown role {}", doc.name, d.role));
        } else if p.check("sampler", &doc.name) {
            p.samplers.push((doc, d));
        }
        OK
    })
}

unsafe fn guard_reg(ctx: *mut c_void, f: impl FnOnce(&mut Pending) -> Status) -> Status {
    let Some(p) = (ctx as *mut Pending).as_mut() else { return ERR };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(p))).unwrap_or(ERR)
}

/// The plugin paths a user named: the graph file's `plugins` (relative to the file),
/// then `--plugin` flags, then `STACKFLOW_PLUGIN_PATH`. Never the current directory.
pub fn requested(graph_file: Option<&Path>, in_graph: &[String], flags: &[PathBuf]) -> Vec<PathBuf> {
    let base = graph_file.and_then(Path::parent).unwrap_or(Path::new(""));
    let mut out: Vec<PathBuf> = in_graph.iter().map(|p| base.join(p)).collect();
    out.extend(flags.iter().cloned());
    if let Some(v) = std::env::var_os(PATH_VAR) {
        out.extend(std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_non_library_files_are_input_errors() {
        let mut r = Registry::with_builtins();
        let e = load(&mut r, Path::new("/nonexistent/libnothing.so")).unwrap_err();
        assert_eq!(e.code_str(), "plugin::not_found");
        assert_eq!(e.exit_code(), 1);
        let junk = std::env::temp_dir().join(format!("stackflow-junk-{}.so", std::process::id()));
        std::fs::write(&junk, b"not a library").unwrap();
        let e = load(&mut r, &junk).unwrap_err();
        let _ = std::fs::remove_file(&junk);
        assert_eq!(e.code_str(), "plugin::load_failed");
        assert_eq!(e.exit_code(), 1);
    }
}
