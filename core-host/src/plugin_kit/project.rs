//! A rule project on disk and what `nixo plugin build` and `install` do
//! with it.
//!
//! `nixo-plugin.toml` names the language and holds, under `[manifest]`, the
//! plugin's manifest without its artefact and hash; the build runs the
//! language's own tool (cargo, componentize-js, componentize-py), then
//! writes `dist/<name>.wasm` and `dist/<name>.toml` with the hash pinned.

use crate::rules::RuleLimits;
use crate::rules::manifest::{Manifest, PluginKind};
use anyhow::{Context, bail, ensure};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The project file of a rule.
pub const PROJECT_FILE: &str = "nixo-plugin.toml";
/// Largest project file accepted.
pub const PROJECT_FILE_LEN_MAX_BYTES: u64 = 16 << 10;
/// The componentize-py release the Python templates are written for.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";
/// How long `nixo plugin install --server` waits for the server to report
/// the new version active.
pub const INSTALL_WAIT_MS: u64 = 30_000;

/// The language a rule is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lang {
    Rust,
    Js,
    Python,
}

impl Lang {
    pub fn parse(text: &str) -> anyhow::Result<Lang> {
        match text {
            "rust" => Ok(Lang::Rust),
            "js" | "javascript" => Ok(Lang::Js),
            "python" | "py" => Ok(Lang::Python),
            other => bail!("the language is rust, js or python, not {other:?}"),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Js => "js",
            Lang::Python => "python",
        }
    }

    pub fn display(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Js => "JavaScript",
            Lang::Python => "Python",
        }
    }
}

/// A rule project: its directory, language and manifest (hash not yet known).
#[derive(Debug, Clone)]
pub struct Project {
    pub dir: PathBuf,
    pub lang: Lang,
    /// `[manifest]` as written, to render the built manifest from.
    manifest: toml::Table,
    pub name: String,
    pub kind: PluginKind,
}

impl Project {
    pub fn open(dir: &Path) -> anyhow::Result<Project> {
        let path = dir.join(PROJECT_FILE);
        let size = std::fs::metadata(&path)
            .with_context(|| format!("{} is not a rule project (no {PROJECT_FILE})", dir.display()))?
            .len();
        ensure!(
            size <= PROJECT_FILE_LEN_MAX_BYTES,
            "{PROJECT_FILE} is larger than {PROJECT_FILE_LEN_MAX_BYTES} bytes"
        );
        let text = std::fs::read_to_string(&path)?;
        let mut table: toml::Table = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let lang = match table.remove("lang") {
            Some(toml::Value::String(lang)) => Lang::parse(&lang)?,
            _ => bail!("{}: `lang` (rust, js or python) is required", path.display()),
        };
        let manifest = match table.remove("manifest") {
            Some(toml::Value::Table(manifest)) => manifest,
            _ => bail!("{}: the [manifest] table is required", path.display()),
        };
        if let Some(key) = table.keys().next() {
            bail!("{}: unknown key `{key}` (only `lang` and [manifest])", path.display());
        }
        for reserved in ["sha256", "artefact"] {
            ensure!(
                !manifest.contains_key(reserved),
                "{}: `{reserved}` is written by the build, not by hand",
                path.display()
            );
        }
        // Validate now, with a placeholder hash, so mistakes show before a build.
        let checked = Manifest::parse(&render(&manifest, "x.wasm", &"0".repeat(64))?)
            .with_context(|| format!("{}: [manifest]", path.display()))?;
        Ok(Project {
            dir: dir
                .canonicalize()
                .with_context(|| format!("resolving {}", dir.display()))?,
            lang,
            manifest,
            name: checked.name,
            kind: checked.kind,
        })
    }

    /// The WIT world the rule exports.
    pub fn world(&self) -> &'static str {
        match self.kind {
            PluginKind::Fraud => "fraud-rule",
            PluginKind::Payout => "payout-rule",
        }
    }

    /// Where `build` writes the built manifest.
    pub fn built_manifest(&self, out: Option<&Path>) -> PathBuf {
        out.map_or_else(|| self.dir.join("dist"), Path::to_path_buf)
            .join(format!("{}.toml", self.name))
    }
}

fn render(manifest: &toml::Table, artefact: &str, sha256: &str) -> anyhow::Result<String> {
    let mut manifest = manifest.clone();
    manifest.insert("artefact".into(), toml::Value::String(artefact.into()));
    manifest.insert("sha256".into(), toml::Value::String(sha256.into()));
    toml::to_string(&manifest).context("rendering the manifest")
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct Built {
    pub artefact: PathBuf,
    pub manifest: PathBuf,
    pub size_bytes: usize,
    pub sha256: String,
    pub build_ms: u128,
}

/// Builds the project in `dir` into `out` (default `dir/dist`).
pub fn build(dir: &Path, out: Option<&Path>) -> anyhow::Result<Built> {
    let project = Project::open(dir)?;
    let out = out.map_or_else(|| dir.join("dist"), Path::to_path_buf);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let out = out.canonicalize()?;
    let artefact = out.join(format!("{}.wasm", project.name));
    let started = Instant::now();
    match project.lang {
        Lang::Rust => build_rust(&project, &artefact)?,
        Lang::Js => build_js(&project, &artefact)?,
        Lang::Python => build_python(&project, &artefact)?,
    }
    let bytes = std::fs::read(&artefact).with_context(|| format!("reading {}", artefact.display()))?;
    let sha256 = crate::wasm_cache::sha256_hex(&bytes);
    let file_name = format!("{}.wasm", project.name);
    let manifest = project.built_manifest(Some(&out));
    std::fs::write(&manifest, render(&project.manifest, &file_name, &sha256)?)?;
    Ok(Built {
        artefact,
        manifest,
        size_bytes: bytes.len(),
        sha256,
        build_ms: started.elapsed().as_millis(),
    })
}

/// Runs a builder, turning "not installed" into what to install.
fn run_tool(mut command: Command, what: &str, install: &str) -> anyhow::Result<()> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = match command.output() {
        Ok(output) => output,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            bail!("{what} needs `{program}`, which is not installed: {install}")
        }
        Err(err) => return Err(err).with_context(|| format!("running {program}")),
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        bail!(
            "{what} failed ({}):\n{}{}",
            output.status,
            stdout.trim_end(),
            stderr.trim_end()
        );
    }
    Ok(())
}

fn build_rust(project: &Project, artefact: &Path) -> anyhow::Result<()> {
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| project.dir.join("target"));
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .current_dir(&project.dir)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-unknown-unknown",
            "--target-dir",
        ])
        .arg(&target_dir);
    run_tool(
        cargo,
        "building a Rust rule",
        "install Rust (https://rustup.rs), then `rustup target add wasm32-unknown-unknown`",
    )?;
    let module = target_dir.join(format!(
        "wasm32-unknown-unknown/release/{}.wasm",
        project.name.replace('-', "_")
    ));
    let bytes = std::fs::read(&module).with_context(|| format!("reading {}", module.display()))?;
    std::fs::write(artefact, super::componentize(&bytes)?)?;
    Ok(())
}

/// The componentize-js package: in `node_modules` of the project or a
/// parent, else where `NIXO_COMPONENTIZE_JS` points.
fn componentize_js(dir: &Path) -> Option<PathBuf> {
    let package = Path::new("node_modules/@bytecodealliance/componentize-js");
    dir.ancestors()
        .map(|d| d.join(package))
        .chain(std::env::var_os("NIXO_COMPONENTIZE_JS").map(PathBuf::from))
        .find(|p| p.join("package.json").is_file())
}

/// Loads componentize-js by its package entry point and builds the
/// component with every WASI feature off: a rule gets no clock, no
/// randomness, no stdio and no network.
const NODE_BUILD: &str = r#"
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
const [pkg, source, wit, world, out] = process.argv.slice(1);
const meta = JSON.parse(await readFile(join(pkg, "package.json"), "utf8"));
const entry = meta.exports?.import ?? meta.exports?.["."]?.import ?? meta.main;
const { componentize } = await import(pathToFileURL(join(pkg, entry)).href);
const { component } = await componentize({
  sourcePath: source,
  witPath: wit,
  worldName: world,
  disableFeatures: ["stdio", "random", "clocks", "http", "fetch-event"],
});
await writeFile(out, component);
"#;

fn build_js(project: &Project, artefact: &Path) -> anyhow::Result<()> {
    let install = format!(
        "install Node.js 18 or later, then run `npm install` in {} (its package.json names \
         @bytecodealliance/componentize-js)",
        project.dir.display()
    );
    let Some(package) = componentize_js(&project.dir) else {
        bail!("building a JavaScript rule needs @bytecodealliance/componentize-js: {install}");
    };
    let source = project.dir.join("rule.js");
    ensure!(source.is_file(), "{} is missing", source.display());
    let mut node = Command::new("node");
    node.current_dir(&project.dir)
        .args(["--input-type=module", "-e", NODE_BUILD])
        .arg(&package)
        .arg(&source)
        .arg(project.dir.join("wit"))
        .arg(project.world())
        .arg(artefact);
    run_tool(node, "building a JavaScript rule", &install)
}

fn build_python(project: &Project, artefact: &Path) -> anyhow::Result<()> {
    ensure!(
        project.dir.join("app.py").is_file(),
        "{} is missing",
        project.dir.join("app.py").display()
    );
    let tool = std::env::var_os("NIXO_COMPONENTIZE_PY").unwrap_or_else(|| "componentize-py".into());
    let mut command = Command::new(tool);
    command
        .current_dir(&project.dir)
        .arg("-d")
        .arg(project.dir.join("wit"))
        // WASI imports become trapping stubs: no files, clock or randomness
        // (a rule is deterministic), and nothing for the host to link.
        .args(["-w", project.world(), "componentize", "--stub-wasi", "app", "-o"])
        .arg(artefact);
    run_tool(
        command,
        "building a Python rule",
        &format!("`pip install componentize-py=={COMPONENTIZE_PY_VERSION}` (Python 3.10 or later)"),
    )
}

/// What `install` did.
#[derive(Debug, Clone)]
pub struct Installed {
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub manifest: PathBuf,
    /// Whether a server confirmed the version active.
    pub confirmed_by: Option<String>,
}

/// Installs a built plugin (a project directory, or a built manifest) into
/// the plugins directory of the server at `data_dir`, after loading it here
/// exactly as the server will. The artefact goes in first under a name of
/// its own (`<name>-<sha256 prefix>.wasm`), then the manifest is swapped
/// in atomically: the server's watcher never sees half a plugin, and the
/// version it replaces serves until the new one is loaded. With `server`,
/// waits until that server reports the new version active.
pub fn install(target: &Path, data_dir: &Path, server: Option<&str>) -> anyhow::Result<Installed> {
    let manifest_path = if target.is_dir() {
        let project = Project::open(target)?;
        let path = project.built_manifest(None);
        ensure!(
            path.is_file(),
            "{} is not built yet: run `nixo plugin build` there first",
            target.display()
        );
        path
    } else {
        target.to_path_buf()
    };
    let (limits, ceilings) = (RuleLimits::default(), RuleLimits::ceilings());
    let (manifest, bytes) = Manifest::load(&manifest_path, &limits, &ceilings)
        .with_context(|| format!("loading {}", manifest_path.display()))?;
    // Loaded here as the server will (compiled once into the kit's cache),
    // then handed to the server's compile cache: its load is a file read.
    let (host, _scratch) = super::kit_host()?;
    host.load_plugin(manifest.clone(), &bytes)
        .context("the plugin would be refused by the server")?;
    host.export_compiled(&bytes, &data_dir.join("cache"))?;

    let plugins = data_dir.join("plugins");
    std::fs::create_dir_all(&plugins).with_context(|| format!("creating {}", plugins.display()))?;
    let artefact = format!("{}-{}.wasm", manifest.name, &manifest.sha256[..12]);
    let mut table: toml::Table = toml::from_str(&std::fs::read_to_string(&manifest_path)?)?;
    table.insert("artefact".into(), toml::Value::String(artefact.clone()));
    let text = toml::to_string(&table)?;
    let previous = Manifest::load(&plugins.join(format!("{}.toml", manifest.name)), &limits, &ceilings)
        .ok()
        .and_then(|(old, _)| old.artefact)
        .filter(|old| *old != artefact);
    write_atomically(&plugins.join(&artefact), &bytes)?;
    let installed_manifest = plugins.join(format!("{}.toml", manifest.name));
    write_atomically(&installed_manifest, text.as_bytes())?;

    let confirmed_by = match server {
        None => None,
        Some(url) => {
            wait_until_active(url, &manifest.name, &manifest.sha256)?;
            Some(url.to_string())
        }
    };
    // The replaced artefact: once the server serves the new version, or
    // right away when no server is watching.
    if let Some(old) = previous {
        let _ = std::fs::remove_file(plugins.join(old));
    }
    Ok(Installed {
        name: manifest.name,
        version: manifest.version,
        sha256: manifest.sha256,
        manifest: installed_manifest,
        confirmed_by,
    })
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let partial = path.with_extension(format!("partial-{}", std::process::id()));
    std::fs::write(&partial, bytes).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

/// Polls the server's `/metrics` until it lists the plugin with this hash
/// as active (`nixo_rule_plugin_active{…} 1`), or says it refused it.
fn wait_until_active(server: &str, name: &str, sha256: &str) -> anyhow::Result<()> {
    let url = format!("{}/metrics", server.trim_end_matches('/'));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
    let deadline = Instant::now() + Duration::from_millis(INSTALL_WAIT_MS);
    let name_label = format!("name=\"{name}\"");
    let sha_label = format!("sha256=\"{sha256}\"");
    loop {
        let text = runtime.block_on(async {
            let response = client.get(&url).send().await?.error_for_status()?;
            response.text().await
        });
        if let Ok(text) = &text {
            let line = |metric: &str| {
                text.lines().any(|l| {
                    l.starts_with(metric) && l.contains(&name_label) && l.contains(&sha_label) && l.ends_with(" 1")
                })
            };
            if line("nixo_rule_plugin_active{") {
                return Ok(());
            }
            if line("nixo_rule_plugin_refused{") {
                bail!("{server} refused {name} ({sha256}); its log says why");
            }
        }
        if Instant::now() >= deadline {
            let why = text.err().map(|e| format!(" (last error: {e})")).unwrap_or_default();
            bail!("{server} did not report {name} ({sha256}) active within {INSTALL_WAIT_MS} ms{why}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
