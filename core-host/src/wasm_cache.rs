//! Compiled-component cache on disk, keyed by artefact hash and engine.
//!
//! Compiling a component with Cranelift takes tens to thousands of
//! milliseconds; loading a serialized one takes a fraction of one. The cache
//! file name carries the sha256 of the artefact and a hash of everything in
//! the engine that affects compiled code, so a stale entry is never used.

use anyhow::Context;
use sha2::{Digest, Sha256};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Address space reserved for each linear memory of an engine's instances:
/// all 4 GiB a 32-bit memory can address, so that, with the guard region
/// after it, compiled code needs no explicit bounds check (and no Spectre
/// masking) on each load and store; a smaller reservation makes Cranelift
/// emit both. Only the pages a memory uses are backed; `max_memory_size`
/// still caps how far a memory may grow.
pub const MEMORY_RESERVATION_BYTES: u64 = 4 << 30;

/// Environment variable that names a profiler for compiled Wasm:
/// `perfmap` writes `/tmp/perf-<pid>.map`, so `perf report` names the
/// guest's functions (a gateway or plugin built with its name section)
/// instead of `[JIT]` addresses. Unset: no profiler.
pub const PROFILER_ENV: &str = "NIXO_WASM_PROFILER";

/// Applies [`PROFILER_ENV`] to an engine's configuration.
pub fn apply_profiler(config: &mut wasmtime::Config) -> anyhow::Result<()> {
    if let Some(strategy) = profiler(std::env::var(PROFILER_ENV).ok().as_deref())? {
        config.profiler(strategy);
    }
    Ok(())
}

/// The profiler a value of [`PROFILER_ENV`] names (`None`: no profiler).
fn profiler(value: Option<&str>) -> anyhow::Result<Option<wasmtime::ProfilingStrategy>> {
    match value.map(str::trim) {
        None | Some("") | Some("none") => Ok(None),
        Some("perfmap") => Ok(Some(wasmtime::ProfilingStrategy::PerfMap)),
        Some(other) => anyhow::bail!("{PROFILER_ENV}={other}: the profilers known are perfmap and none"),
    }
}

/// Hex sha256 of an artefact.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn cache_path(engine: &Engine, cache_dir: &Path, sha256: &str) -> PathBuf {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    env!("CARGO_PKG_VERSION").hash(&mut hasher);
    cache_dir.join(format!("{sha256}-{:016x}.cwasm", hasher.finish()))
}

/// Copies the compiled form of `bytes` from one cache directory to another
/// (for the same engine), when the first has it; returns whether it did.
pub fn copy_entry(engine: &Engine, bytes: &[u8], from_dir: &Path, to_dir: &Path) -> anyhow::Result<bool> {
    let sha256 = sha256_hex(bytes);
    let from = cache_path(engine, from_dir, &sha256);
    if !from.exists() {
        return Ok(false);
    }
    std::fs::create_dir_all(to_dir).with_context(|| format!("creating {}", to_dir.display()))?;
    let to = cache_path(engine, to_dir, &sha256);
    let partial = to.with_extension(format!("partial-{}-copy", std::process::id()));
    std::fs::copy(&from, &partial).with_context(|| format!("copying {}", from.display()))?;
    std::fs::rename(&partial, &to).with_context(|| format!("renaming into {}", to.display()))?;
    Ok(true)
}

/// Compiles `bytes`, or loads the compiled form from `cache_dir`.
pub fn load_component(engine: &Engine, bytes: &[u8], cache_dir: &Path) -> anyhow::Result<Component> {
    let path = cache_path(engine, cache_dir, &sha256_hex(bytes));
    if path.exists() {
        // SAFETY: the file was written below by `Component::serialize` for an
        // engine with the same compatibility hash, into the data directory
        // this process owns, and renamed into place only once complete.
        // Wasmtime also checks the artefact's header against the engine.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize_file(engine, &path) };
        match loaded {
            Ok(component) => return Ok(component),
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "ignoring unusable compile cache entry")
            }
        }
    }
    let component = Component::new(engine, bytes)?;
    let compiled = component.serialize()?;
    std::fs::create_dir_all(cache_dir).with_context(|| format!("creating {}", cache_dir.display()))?;
    // Unique per writer: concurrent loads of one artefact each write their own
    // file and the last rename wins (the contents are identical).
    static WRITERS: AtomicU64 = AtomicU64::new(0);
    let writer = WRITERS.fetch_add(1, Ordering::Relaxed);
    let partial = path.with_extension(format!("partial-{}-{writer}", std::process::id()));
    std::fs::write(&partial, compiled).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, &path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(component)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profiler_switch_knows_perfmap_and_refuses_the_rest() {
        assert!(profiler(None).unwrap().is_none());
        assert!(profiler(Some("none")).unwrap().is_none());
        assert!(profiler(Some(" ")).unwrap().is_none());
        assert!(matches!(
            profiler(Some("perfmap")).unwrap(),
            Some(wasmtime::ProfilingStrategy::PerfMap)
        ));
        let err = profiler(Some("jitdump")).unwrap_err().to_string();
        assert!(err.contains("NIXO_WASM_PROFILER=jitdump"), "{err}");
    }
}
