//! Helpers shared by the core tests and the end-to-end tests: the fixture generator's
//! hash-generated tensors, and building the plugin libraries inside a test run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `n` values of the fixture generator's integer hash, scaled by `2^scale_pow2` (exact in
/// f32, so both sides of a comparison make the same inputs without storing them).
pub fn hash_uniform(n: usize, tag: u32, scale_pow2: i32) -> Vec<f32> {
    (0..n as u32)
        .map(|i| {
            let mut x = i.wrapping_add(tag.wrapping_mul(0x9E37_79B9));
            x ^= x >> 16;
            x = x.wrapping_mul(0x7FEB_352D);
            x ^= x >> 15;
            x = x.wrapping_mul(0x846C_A68B);
            x ^= x >> 16;
            ((x >> 8) as i32 - (1 << 23)) as f32 * 2f32.powi(scale_pow2)
        })
        .collect()
}

/// Builds every plugin crate and the plugin tutorial once per test binary, with the
/// running test's profile and target directory (a nested cargo), and returns the profile
/// directory (`target/debug` under `cargo test`): libraries at its top, example plugins
/// under `examples/`.
pub fn plugin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable");
        let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps").to_path_buf();
        let target_dir = profile_dir.parent().expect("target dir");
        let profile = match profile_dir.file_name().and_then(|s| s.to_str()) {
            Some("debug") | None => "dev".to_string(),
            Some(p) => p.to_string(),
        };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args(["build", "--quiet", "--lib", "--examples", "--profile", &profile, "--target-dir"])
            .arg(target_dir)
            .args(["-p", "stackflow-gan-losses", "-p", "stackflow-samplers", "-p", "stackflow-example-block"])
            .args(["-p", "stackflow-test-plugins", "-p", "custom-block-plugin"])
            .current_dir(root())
            .output()
            .expect("cargo runs");
        assert!(out.status.success(), "building the plugins failed:\n{}", String::from_utf8_lossy(&out.stderr));
        profile_dir
    })
}

/// The platform's file name of the dynamic library `stem` (`libstem.so` on Linux).
pub fn dll_name(stem: &str) -> String {
    format!("{}{stem}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX)
}
