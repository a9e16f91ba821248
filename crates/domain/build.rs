//! Build script: turns uap-core's `regexes.yaml` into Rust data compiled
//! into the binary, so user-agent parsing needs no file and no network at
//! run time.
//!
//! The `ua-parser` crate deliberately ships no loader and no data of its
//! own, but its crates.io package does contain uap-core (`uap-core/
//! regexes.yaml` and the test cases), and its documentation suggests
//! embedding the parsers "via a build script". So we take the file from the
//! very `ua-parser` package this crate is built against, which Cargo has
//! already downloaded and unpacked before running this script. The regexes
//! therefore always match the parser version in `Cargo.lock`, and nothing
//! is vendored into our repository. Where that package is:
//!
//! 1. `CLICKTRAIL_UAP_REGEXES`, if set, names the `regexes.yaml` to use;
//! 2. else the version locked in `Cargo.lock`, unpacked in Cargo's registry
//!    cache (`$CARGO_HOME/registry/src/*/ua-parser-<version>/`), the normal
//!    case, with no subprocess;
//! 3. else `cargo metadata --offline --locked` (vendored or otherwise
//!    replaced sources). It is not first because it needs every package of
//!    the workspace, dev-dependencies included, to be downloaded already,
//!    which a plain `cargo build` of the server does not do.
//!
//! The same lookup finds the `isbot` package, whose fixtures the tests use;
//! both directories are passed to the crate as compile-time environment
//! variables (`CLICKTRAIL_UAP_CORE_DIR`, `CLICKTRAIL_ISBOT_DIR`).

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

type BoxError = Box<dyn std::error::Error>;

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    resolve: Option<Resolve>,
}

#[derive(Deserialize)]
struct Package {
    id: String,
    name: String,
    manifest_path: PathBuf,
}

#[derive(Deserialize)]
struct Resolve {
    nodes: Vec<Node>,
}

#[derive(Deserialize)]
struct Node {
    id: String,
    deps: Vec<NodeDep>,
}

#[derive(Deserialize)]
struct NodeDep {
    pkg: String,
}

#[derive(Deserialize)]
struct Regexes {
    user_agent_parsers: Vec<UaParser>,
    os_parsers: Vec<OsParser>,
    device_parsers: Vec<DeviceParser>,
}

#[derive(Deserialize)]
struct UaParser {
    regex: String,
    family_replacement: Option<String>,
    v1_replacement: Option<String>,
    v2_replacement: Option<String>,
    v3_replacement: Option<String>,
    v4_replacement: Option<String>,
}

#[derive(Deserialize)]
struct OsParser {
    regex: String,
    os_replacement: Option<String>,
    os_v1_replacement: Option<String>,
    os_v2_replacement: Option<String>,
    os_v3_replacement: Option<String>,
    os_v4_replacement: Option<String>,
}

#[derive(Deserialize)]
struct DeviceParser {
    regex: String,
    regex_flag: Option<String>,
    device_replacement: Option<String>,
    brand_replacement: Option<String>,
    model_replacement: Option<String>,
}

fn main() -> Result<(), BoxError> {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CLICKTRAIL_UAP_REGEXES");

    const NAMES: [&str; 2] = ["ua-parser", "isbot"];
    let deps = match registry_dirs(&NAMES) {
        Ok(dirs) if dirs.iter().all(Option::is_some) => Ok(dirs),
        from_registry => dependency_dirs(&NAMES).map_err(|e| match from_registry {
            Ok(_) => e,
            Err(r) => format!("{r}; {e}").into(),
        }),
    };
    let regexes_path = match env::var_os("CLICKTRAIL_UAP_REGEXES") {
        Some(p) => PathBuf::from(p),
        None => {
            let dirs = deps.as_ref().map_err(|e| {
                format!(
                    "cannot locate the ua-parser package ({e}); \
                     set CLICKTRAIL_UAP_REGEXES to the path of uap-core's regexes.yaml"
                )
            })?;
            let ua = dirs[0]
                .as_ref()
                .ok_or("ua-parser is not a dependency of clicktrail-domain")?;
            ua.join("uap-core").join("regexes.yaml")
        }
    };
    println!("cargo:rerun-if-changed={}", regexes_path.display());

    if let Ok(dirs) = &deps {
        if let Some(ua) = &dirs[0] {
            println!(
                "cargo:rustc-env=CLICKTRAIL_UAP_CORE_DIR={}",
                ua.join("uap-core").display()
            );
        }
        if let Some(isbot) = &dirs[1] {
            println!("cargo:rustc-env=CLICKTRAIL_ISBOT_DIR={}", isbot.display());
        }
    }

    let yaml = fs::read_to_string(&regexes_path)
        .map_err(|e| format!("cannot read {}: {e}", regexes_path.display()))?;
    let regexes: Regexes = serde_yaml::from_str(&yaml)
        .map_err(|e| format!("cannot parse {}: {e}", regexes_path.display()))?;

    let out = PathBuf::from(env::var("OUT_DIR")?).join("uap_regexes.rs");
    fs::write(&out, generate(&regexes)?)?;
    Ok(())
}

#[derive(Deserialize)]
struct Lockfile {
    package: Vec<LockedPackage>,
}

#[derive(Deserialize)]
struct LockedPackage {
    name: String,
    version: String,
    source: Option<String>,
    #[serde(default)]
    dependencies: Vec<String>,
}

const CRATES_IO: &str = "registry+https://github.com/rust-lang/crates.io-index";

/// Source directories of the named dependencies of this package in Cargo's
/// registry cache, at the versions `Cargo.lock` pins.
fn registry_dirs(names: &[&str]) -> Result<Vec<Option<PathBuf>>, BoxError> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let lock_path = manifest_dir
        .ancestors()
        .map(|d| d.join("Cargo.lock"))
        .find(|p| p.is_file())
        .ok_or("no Cargo.lock found")?;
    println!("cargo:rerun-if-changed={}", lock_path.display());
    let lock: Lockfile = toml::from_str(&fs::read_to_string(&lock_path)?)?;
    let me = env::var("CARGO_PKG_NAME")?;
    let my_deps = &lock
        .package
        .iter()
        .find(|p| p.name == me)
        .ok_or("this package is missing from Cargo.lock")?
        .dependencies;
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .ok_or("neither CARGO_HOME nor HOME is set")?;
    let registries: Vec<PathBuf> = fs::read_dir(cargo_home.join("registry").join("src"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    Ok(names
        .iter()
        .map(|name| {
            // A dependency entry is "name", or "name version" when several
            // versions are locked.
            let version = my_deps.iter().find_map(|d| {
                let mut parts = d.split(' ');
                (parts.next() == Some(name)).then(|| parts.next().map(str::to_owned))
            })?;
            let version = version.or_else(|| {
                lock.package
                    .iter()
                    .find(|p| p.name == *name && p.source.as_deref() == Some(CRATES_IO))
                    .map(|p| p.version.clone())
            })?;
            registries
                .iter()
                .map(|r| r.join(format!("{name}-{version}")))
                .find(|d| d.join("Cargo.toml").is_file())
        })
        .collect())
}

/// Source directories of the named direct dependencies of this package, in
/// the order asked (None for a name that is not a dependency), from
/// `cargo metadata`.
fn dependency_dirs(names: &[&str]) -> Result<Vec<Option<PathBuf>>, BoxError> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("Cargo.toml");
    let mut cmd = Command::new(cargo);
    cmd.args(["metadata", "--format-version", "1", "--offline", "--locked"])
        .arg("--manifest-path")
        .arg(&manifest);
    if let Ok(target) = env::var("TARGET") {
        cmd.args(["--filter-platform", &target]);
    }
    let output = cmd.output()?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr)
            .trim()
            .to_owned()
            .into());
    }
    let meta: Metadata = serde_json::from_slice(&output.stdout)?;
    let me = meta
        .packages
        .iter()
        .find(|p| p.manifest_path == manifest)
        .ok_or("this package is missing from cargo metadata")?;
    let resolve = meta.resolve.ok_or("cargo metadata gave no resolve graph")?;
    let node = resolve
        .nodes
        .iter()
        .find(|n| n.id == me.id)
        .ok_or("this package is missing from the resolve graph")?;
    Ok(names
        .iter()
        .map(|name| {
            node.deps.iter().find_map(|d| {
                meta.packages
                    .iter()
                    .find(|p| p.id == d.pkg && p.name == *name)
                    .and_then(|p| p.manifest_path.parent().map(Path::to_path_buf))
            })
        })
        .collect())
}

fn lit(s: &str) -> String {
    // Debug formatting of a str is a valid Rust string literal.
    format!("{s:?}")
}

fn opt(s: &Option<String>) -> String {
    match s {
        Some(s) => format!("Some({})", lit(s)),
        None => "None".to_owned(),
    }
}

fn generate(r: &Regexes) -> Result<String, BoxError> {
    let mut s = String::new();
    writeln!(
        s,
        "// Generated by build.rs from uap-core's regexes.yaml. Do not edit."
    )?;
    writeln!(s, "pub(super) static UA_RULES: &[UaRule] = &[")?;
    for p in &r.user_agent_parsers {
        writeln!(
            s,
            "UaRule {{ regex: {}, family: {}, v1: {}, v2: {}, v3: {}, v4: {} }},",
            lit(&p.regex),
            opt(&p.family_replacement),
            opt(&p.v1_replacement),
            opt(&p.v2_replacement),
            opt(&p.v3_replacement),
            opt(&p.v4_replacement),
        )?;
    }
    writeln!(s, "];")?;
    writeln!(s, "pub(super) static OS_RULES: &[OsRule] = &[")?;
    for p in &r.os_parsers {
        writeln!(
            s,
            "OsRule {{ regex: {}, os: {}, v1: {}, v2: {}, v3: {}, v4: {} }},",
            lit(&p.regex),
            opt(&p.os_replacement),
            opt(&p.os_v1_replacement),
            opt(&p.os_v2_replacement),
            opt(&p.os_v3_replacement),
            opt(&p.os_v4_replacement),
        )?;
    }
    writeln!(s, "];")?;
    writeln!(s, "pub(super) static DEVICE_RULES: &[DeviceRule] = &[")?;
    for p in &r.device_parsers {
        let ignore_case = match p.regex_flag.as_deref() {
            None => false,
            Some("i") => true,
            Some(other) => return Err(format!("unknown regex_flag {other:?}").into()),
        };
        writeln!(
            s,
            "DeviceRule {{ regex: {}, ignore_case: {ignore_case}, device: {}, brand: {}, model: {} }},",
            lit(&p.regex),
            opt(&p.device_replacement),
            opt(&p.brand_replacement),
            opt(&p.model_replacement),
        )?;
    }
    writeln!(s, "];")?;
    Ok(s)
}
