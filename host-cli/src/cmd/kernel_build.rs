//! `kina kernel build --recipe R [--arch A] [--output DIR]`: a kernel from a
//! `[build]` recipe, checked against its profiles before it is compiled.
//!
//! Stages, one progress line each: the recipe and its lock; the toolchain;
//! the base config (verified download); a cache lookup; the Linux source
//! (verified download, unpacked once per tarball); kina's fragment and `make
//! olddefconfig`; the pre-compile check (a symbol olddefconfig dropped is an
//! error naming the dependency it lacks; then the same engine as `kina
//! kernel check`); the compile; the built-kernel directory.
//!
//! The result lives in the cache at `kernels/built/<key>`, where the key
//! hashes the source and base-config digests, the profiles' required
//! symbol groups (which, with those two, decide the fragment), the
//! toolchain, the architecture and the image format: a second build of the
//! same inputs is a lookup that needs neither the source nor a compiler
//! run. Builds of one key take a lock, so concurrent ones compile once.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use kina_builder::digest::Sha256Digest;
use kina_builder::fetch::cache::Cache;
use kina_builder::fetch::http::{FetchItem, Fetcher};
use kina_builder::fetch::mirror::UrlRewrites;
use kina_builder::fetch::progress::{Progress, ProgressMode};
use kina_builder::kernel::build::{
    BuildDir, BuildKey, Requirement, Toolchain, config_values, dropped, fragment, fragment_text,
    unpack_source,
};
use kina_builder::kernel::kconfig::KconfigIndex;
use kina_builder::kernel::{
    BUILT_KERNEL_SCHEMA, BuiltKernel, BuiltKernelMeta, KernelError, KernelFormat, KernelLock,
    KernelRecipe, LockedSource, kernel_lock_path,
};
use kina_builder::lockgen::deb_url;
use kina_builder::platform::Arch;
use kina_contract::kernel::report::Verdict;
use kina_contract::kernel::{KernelConfig, Presence, ProfileSet, check};

use crate::cli::KernelBuildArgs;
use crate::dirs::KinaDirs;

/// A recipe with its lock, from a file or built into kina.
struct Resolved {
    recipe: KernelRecipe,
    lock: KernelLock,
    label: String,
}

fn resolve_recipe(given: &str) -> anyhow::Result<Resolved> {
    let path = Path::new(given);
    if path.is_file() {
        let (recipe, _) = KernelRecipe::load(path)?;
        let lock_path = kernel_lock_path(path);
        let lock = KernelLock::read(&lock_path, path).with_context(|| {
            format!(
                "reading {}; lock the recipe first: kina kernel lock --recipe {}",
                lock_path.display(),
                path.display()
            )
        })?;
        return Ok(Resolved {
            recipe,
            lock,
            label: path.display().to_string(),
        });
    }
    let name = given.strip_suffix(".toml").unwrap_or(given);
    let Some((_, text, lock_text)) = crate::builtin::KERNEL_BUILD_RECIPES
        .iter()
        .find(|(n, _, _)| *n == name)
    else {
        let known: Vec<&str> = crate::builtin::KERNEL_BUILD_RECIPES
            .iter()
            .map(|(n, _, _)| *n)
            .collect();
        bail!(
            "--recipe {given}: no such file, and no built-in kernel recipe has that name (built in: {})",
            known.join(", ")
        );
    };
    let label = format!("built-in {name}.toml");
    let recipe_origin = PathBuf::from(&label);
    let (recipe, _) = KernelRecipe::parse(text.as_bytes(), &recipe_origin)?;
    let lock = KernelLock::from_text(
        lock_text,
        Path::new(&format!("built-in {name}.lock")),
        text,
        &recipe_origin,
    )?;
    Ok(Resolved {
        recipe,
        lock,
        label,
    })
}

/// Shipped profiles plus the site's `--profile-file`s.
fn profile_set(files: &[PathBuf]) -> anyhow::Result<ProfileSet> {
    let mut set = ProfileSet::shipped()?;
    if files.is_empty() {
        return Ok(set);
    }
    // ProfileSet reads site profiles from a directory (a node's
    // /etc/kina/kernel-profiles); give it one holding exactly these files.
    let dir =
        RemoveOnDrop(std::env::temp_dir().join(format!("kina-profiles-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0)
        .with_context(|| format!("creating {} for --profile-file", dir.0.display()))?;
    for (i, file) in files.iter().enumerate() {
        let text = std::fs::read(file)
            .with_context(|| format!("reading kernel profile {}", file.display()))?;
        std::fs::write(dir.0.join(format!("{i:03}.toml")), text)
            .context("copying a --profile-file")?;
    }
    set.add_dir(&dir.0)
        .with_context(|| format!("reading --profile-file {}", files_list(files)))?;
    Ok(set)
}

/// A scratch directory removed however the build ends (the build log is
/// kept elsewhere).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Removes the build directories of this key that a killed build left
/// (`KEY16-PID`, not removed on SIGKILL or power loss). Called under the
/// key's lock, so none of them belongs to a running build.
fn remove_stale_build_dirs(work: &Path, key16: &str, ours: &Path) {
    let Ok(entries) = std::fs::read_dir(work) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let stale = entry
            .file_name()
            .to_str()
            .and_then(|name| name.strip_prefix(key16))
            .is_some_and(|rest| rest.starts_with('-'));
        if stale && path != ours {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

fn files_list(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The required options of `profiles` (includes expanded), as the fragment needs them.
pub fn requirements(set: &ProfileSet, profiles: &[String]) -> anyhow::Result<Vec<Requirement>> {
    let mut out = Vec::new();
    for name in profiles {
        for (_, option) in set.expanded(name)? {
            if option.required {
                out.push(Requirement {
                    symbols: option.symbols.clone(),
                    all: option.all,
                });
            }
        }
    }
    Ok(out)
}

/// The requirements in one canonical text, for the cache key.
fn requirements_text(reqs: &[Requirement]) -> String {
    let mut lines: Vec<String> = reqs
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                if r.all { "all" } else { "any" },
                r.symbols.join(",")
            )
        })
        .collect();
    lines.sort();
    lines.dedup();
    lines.join("\n")
}

struct Stages {
    start: Instant,
    quiet: bool,
}

impl Stages {
    fn say(&self, what: &str) {
        if !self.quiet {
            eprintln!("[{:>7.1}s] {what}", self.start.elapsed().as_secs_f64());
        }
    }
}

pub async fn run(args: KernelBuildArgs, dirs: &KinaDirs, quiet: bool) -> anyhow::Result<()> {
    if cfg!(target_os = "macos") {
        bail!(
            "kina kernel build needs Linux (Debian's kernel toolchain); on macOS pull a built kernel instead (`kina kernel pull REF`), or build it on a Linux machine and push it (`kina kernel push REF`)"
        );
    }
    let stages = Stages {
        start: Instant::now(),
        quiet,
    };
    let Resolved {
        recipe,
        lock,
        label,
    } = resolve_recipe(&args.recipe)?;
    let Some(build) = recipe.build.clone() else {
        return Err(KernelError::NotABuildRecipe { recipe: label }.into());
    };
    let arch: Arch = match &args.arch {
        Some(a) => a
            .trim_start_matches("linux/")
            .parse()
            .map_err(anyhow::Error::msg)
            .context("--arch")?,
        None => super::node::node_arch(None)?,
    };
    if !recipe.architectures.contains(&arch) {
        bail!(
            "kernel recipe {label} is not for {arch} (its architectures: {})",
            recipe
                .architectures
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let source = lock
        .source
        .clone()
        .ok_or_else(|| KernelError::NoLockedSource {
            recipe: label.clone(),
        })?;
    let base_pin = build
        .config
        .get(&arch)
        .with_context(|| format!("kernel recipe {label} has no [build.config.{arch}]"))?
        .clone();
    let set = profile_set(&args.profile_files)?;
    let reqs = requirements(&set, &build.profiles)
        .with_context(|| format!("the profiles of kernel recipe {label}"))?;
    stages.say(&format!(
        "recipe {} ({arch}): {}, profiles {}",
        recipe.name,
        source.label(),
        if build.profiles.is_empty() {
            "none".to_string()
        } else {
            build.profiles.join(", ")
        }
    ));

    let toolchain = Toolchain::detect(arch)?;
    stages.say(&format!("toolchain: {}", toolchain.gcc));
    let format = KernelFormat::for_arch(arch);

    let cache = Cache::open(dirs.cache()).context("opening the download cache")?;
    let rewrites = UrlRewrites::from_flags_and_env(&args.url_rewrites)
        .context("parsing --url-rewrite / KINA_URL_REWRITE")?;
    let fetcher = Fetcher::new(
        cache.clone(),
        rewrites,
        Progress::new(ProgressMode::detect(quiet)),
    )?;
    let base_path = fetcher
        .fetch(&FetchItem {
            url: base_pin.url.clone(),
            sha256: base_pin.sha256,
            size: None,
            label: format!("base kernel config ({arch})"),
        })
        .await?;
    let base =
        std::fs::read(&base_path).with_context(|| format!("reading {}", base_path.display()))?;
    stages.say(&format!("base config {} verified", base_pin.sha256));

    let key = BuildKey {
        source_sha256: source.sha256(),
        base_config_sha256: base_pin.sha256,
        fragment: &requirements_text(&reqs),
        toolchain: &toolchain,
        format,
        profiles: &build.profiles,
    }
    .digest();
    let kernels_dir = dirs.cache().join("kernels");
    let lock_dir = crate::kernel_store::build_cache_dir(dirs);
    let built_dir = lock_dir.join(key.hex());
    std::fs::create_dir_all(&lock_dir)
        .with_context(|| format!("creating {}", lock_dir.display()))?;
    // One build per key at a time: a second waits here and finds it built.
    let key_lock_path = lock_dir.join(format!(".{}.lock", key.hex()));
    let key_lock = tokio::task::spawn_blocking({
        let path = key_lock_path.clone();
        move || -> std::io::Result<std::fs::File> {
            let file = std::fs::File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            file.lock()?;
            Ok(file)
        }
    })
    .await?
    .with_context(|| format!("locking {}", key_lock_path.display()))?;

    let built = match BuiltKernel::open(&built_dir) {
        Ok(built) => {
            stages.say(&format!("cached: {}", built_dir.display()));
            built
        }
        Err(_) => {
            let built = build_kernel(
                &stages,
                BuildInputs {
                    recipe_name: &recipe.name,
                    profiles: &build.profiles,
                    set: &set,
                    reqs: &reqs,
                    source: &source,
                    base: &base,
                    base_sha256: base_pin.sha256,
                    toolchain,
                    format,
                    jobs: args.jobs,
                    key,
                    built_dir: &built_dir,
                },
                &fetcher,
                &args.mirrors,
                &recipe,
                &kernels_dir,
            )
            .await?;
            stages.say(&format!("built: {}", built_dir.display()));
            built
        }
    };
    drop(key_lock);

    let kernel_size = std::fs::metadata(built.kernel_path())
        .map(|m| m.len())
        .unwrap_or(0);
    let result = match &args.output {
        Some(out) => BuiltKernel::install(
            out,
            &built.meta,
            &built.kernel_path(),
            &built.config_path(),
            &std::fs::read(built.report_path())
                .with_context(|| format!("reading {}", built.report_path().display()))?,
        )
        .with_context(|| format!("writing --output {}", out.display()))?,
        None => built,
    };
    println!(
        "{} {} {} ({:?}, {} bytes, sha256 {})",
        result.meta.recipe,
        result.meta.arch,
        result.meta.release,
        result.meta.format,
        kernel_size,
        result.meta.kernel_sha256
    );
    println!("{}", result.dir.display());
    Ok(())
}

struct BuildInputs<'a> {
    recipe_name: &'a str,
    profiles: &'a [String],
    set: &'a ProfileSet,
    reqs: &'a [Requirement],
    source: &'a LockedSource,
    base: &'a [u8],
    base_sha256: Sha256Digest,
    toolchain: Toolchain,
    format: KernelFormat,
    jobs: Option<usize>,
    key: Sha256Digest,
    built_dir: &'a Path,
}

async fn build_kernel(
    stages: &Stages,
    inputs: BuildInputs<'_>,
    fetcher: &Fetcher,
    mirrors: &crate::cli::MirrorArgs,
    recipe: &KernelRecipe,
    kernels_dir: &Path,
) -> anyhow::Result<BuiltKernel> {
    let arch = inputs.toolchain.arch;
    let item = match inputs.source {
        LockedSource::Debian {
            archive,
            filename,
            size,
            sha256,
            ..
        } => {
            let mirrors = super::node::kernel_mirrors(mirrors, recipe)?;
            FetchItem {
                url: deb_url(&mirrors, *archive, filename),
                sha256: *sha256,
                size: Some(*size),
                label: inputs.source.label(),
            }
        }
        LockedSource::Tarball { url, sha256 } => FetchItem {
            url: url.clone(),
            sha256: *sha256,
            size: None,
            label: inputs.source.label(),
        },
    };
    let tarball = fetcher.fetch(&item).await?;
    stages.say(&format!("source {} verified", item.sha256));
    let tree = tokio::task::spawn_blocking({
        let (tarball, sha, dir) = (tarball.clone(), item.sha256, kernels_dir.to_path_buf());
        move || unpack_source(&tarball, &sha, &dir)
    })
    .await??;
    stages.say(&format!("source tree {}", tree.dir.display()));

    let kconfig = KconfigIndex::read(&tree.dir, arch)
        .with_context(|| format!("reading the Kconfig files of {}", tree.dir.display()))?;
    let base_text = String::from_utf8_lossy(inputs.base).into_owned();
    let base_values = config_values(&base_text);
    let symbols = fragment(&base_values, inputs.reqs, &kconfig);
    let fragment = fragment_text(&symbols);
    stages.say(&format!(
        "fragment: {}",
        if symbols.is_empty() {
            "nothing (the base config has every required option)".to_string()
        } else {
            symbols
                .iter()
                .map(|s| format!("CONFIG_{s}=y"))
                .collect::<Vec<_>>()
                .join(" ")
        }
    ));

    let work = kernels_dir.join("work");
    let logs = kernels_dir.join("logs");
    for dir in [&work, &logs] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let objdir = RemoveOnDrop(work.join(format!(
        "{}-{}",
        &inputs.key.hex()[..16],
        std::process::id()
    )));
    remove_stale_build_dirs(&work, &inputs.key.hex()[..16], &objdir.0);
    std::fs::create_dir_all(&objdir.0)
        .with_context(|| format!("creating the build directory {}", objdir.0.display()))?;
    let log = logs.join(format!(
        "{}-{arch}-{}.log",
        inputs.recipe_name,
        &inputs.key.hex()[..16]
    ));
    let _ = std::fs::remove_file(&log);
    let build = BuildDir {
        source: tree,
        objdir: objdir.0.clone(),
        toolchain: inputs.toolchain.clone(),
        log: log.clone(),
        jobs: inputs
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
    };
    let (build, configured) = tokio::task::spawn_blocking({
        let base = inputs.base.to_vec();
        let fragment = fragment.clone();
        move || build.configure(&base, &fragment).map(|c| (build, c))
    })
    .await??;
    stages.say("olddefconfig done");

    let configured_values = config_values(&configured);
    let lost = dropped(&symbols, &configured_values, &kconfig);
    if !lost.is_empty() {
        bail!(
            "make olddefconfig dropped {} of the options the profiles ({}) require, so this base config cannot give them; nothing was compiled:\n{}\nchange the base config so these dependencies hold, or drop the profile that requires them (build log: {})",
            lost.len(),
            inputs.profiles.join(", "),
            lost.iter()
                .map(|d| format!("  {d}"))
                .collect::<Vec<_>>()
                .join("\n"),
            log.display()
        );
    }
    let source_label = format!("{} ({arch}) .config after olddefconfig", inputs.recipe_name);
    let config = KernelConfig::from_bytes(configured.as_bytes(), &source_label)?;
    let report = check(inputs.set, inputs.profiles, Some(&config), None)?;
    let as_module: Vec<String> = report
        .profiles
        .iter()
        .flat_map(|p| p.options.iter())
        .filter(|o| o.required && o.presence == Presence::Module)
        .map(|o| o.config_names())
        .collect();
    if !report.passed() || !as_module.is_empty() {
        let failed: Vec<&str> = report
            .profiles
            .iter()
            .filter(|p| p.verdict == Verdict::Fail)
            .map(|p| p.name.as_str())
            .collect();
        bail!(
            "the configured kernel does not pass its profiles; nothing was compiled:\n{}{}",
            report.render(&[]),
            if as_module.is_empty() {
                String::new()
            } else {
                format!(
                    "built as modules, which a built kernel does not ship: {}; failed: {}\n",
                    as_module.join(", "),
                    failed.join(", ")
                )
            }
        );
    }
    let report_json = serde_json::to_vec_pretty(&report)?;
    stages.say(&format!(
        "profiles pass before compiling: {}",
        inputs.profiles.join(", ")
    ));

    stages.say(&format!(
        "compiling {} with {} jobs (log: {})",
        inputs.format.make_target().0,
        build.jobs,
        log.display()
    ));
    let format = inputs.format;
    let (build, (image, release)) =
        tokio::task::spawn_blocking(move || build.compile(format).map(|r| (build, r))).await??;
    // `make` re-syncs .config before compiling; what is kept is what was built.
    let config_path = build.config_path();
    let final_config = std::fs::read(&config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    if config_values(&String::from_utf8_lossy(&final_config)) != configured_values {
        bail!(
            "the .config changed between the check and the compile ({}); the build log is {}",
            config_path.display(),
            log.display()
        );
    }
    let (kernel_sha256, _) = Sha256Digest::of_reader(
        std::fs::File::open(&image).with_context(|| format!("opening {}", image.display()))?,
    )?;
    let meta = BuiltKernelMeta {
        schema: BUILT_KERNEL_SCHEMA,
        recipe: inputs.recipe_name.to_string(),
        arch,
        release,
        format,
        kernel_sha256,
        config_sha256: Sha256Digest::of(&final_config),
        profiles: inputs.profiles.to_vec(),
        source_sha256: inputs.source.sha256(),
        base_config_sha256: inputs.base_sha256,
        toolchain: inputs.toolchain.gcc.clone(),
    };
    let built = BuiltKernel::install(inputs.built_dir, &meta, &image, &config_path, &report_json)?;
    drop(build);
    drop(objdir);
    let _ = std::fs::remove_file(&log);
    Ok(built)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_killed_builds_directory_of_the_same_key_is_removed_and_nothing_else() {
        let tmp = tempfile::tempdir().unwrap();
        let work = tmp.path();
        for name in [
            "0123456789abcdef-111",
            "0123456789abcdef-222",
            "fedcba9876543210-333",
        ] {
            std::fs::create_dir_all(work.join(name).join("obj")).unwrap();
        }
        let ours = work.join("0123456789abcdef-222");
        remove_stale_build_dirs(work, "0123456789abcdef", &ours);
        assert!(!work.join("0123456789abcdef-111").exists());
        assert!(ours.exists(), "the running build's own directory stays");
        assert!(
            work.join("fedcba9876543210-333").exists(),
            "another key's stays"
        );
    }
}
