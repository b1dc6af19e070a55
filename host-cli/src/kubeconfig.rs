//! The user's kubeconfig: kina adds a cluster's admin credentials to it as
//! cluster, user and context `kina-<cluster>`, and removes them again, the
//! way kind does with `kind-<cluster>` (kind's
//! `pkg/cluster/internal/kubeconfig`).
//!
//! Unlike kind and kubectl, which decode the file and encode it again, kina
//! edits the text: everything but our three list items and
//! `current-context` keeps its exact bytes, comments, order and quoting
//! included. See [`edit`] for how, and how each edit is checked before it is
//! written.
//!
//! Editing follows client-go's conventions so that kina, kubectl and kind can
//! edit the same file at the same time: a lock file `<file>.lock` created
//! with `O_CREAT|O_EXCL` and removed afterwards (client-go
//! `tools/clientcmd/loader.go`, `lockFile`/`unlockFile`), and the same choice
//! of file under `$KUBECONFIG` (client-go `tools/clientcmd/config.go`,
//! `PathOptions.GetDefaultFilename`). kina waits for a busy lock for up to
//! [`LOCK_TIMEOUT`] instead of failing at once. The new text is written to a
//! temporary file beside the target, synced and renamed over it, so a crash
//! leaves the old file or the new one, never half of one.

mod edit;
mod yaml;

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;

/// How long to wait for another kubectl, kind or kina to release the lock.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest pause between two attempts at the lock.
const LOCK_MAX_PAUSE: Duration = Duration::from_millis(100);

/// Permissions of a kubeconfig kina creates, and of the directory it
/// creates for it: the file holds a cluster-admin key.
const NEW_FILE_MODE: u32 = 0o600;
const NEW_DIR_MODE: u32 = 0o700;

/// A cluster's entry in the kubeconfig: a cluster, a user and a context, all
/// named [`Entry::context`]. The certificate data are base64 of PEM, as in
/// kubeadm's `admin.conf`.
///
/// `Debug` does not show the client key.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    /// `kina-<cluster>`: the name of the cluster, the user and the context.
    pub context: String,
    /// The API server as the host reaches it, e.g. `https://127.0.0.1:41234`.
    pub server: String,
    /// `certificate-authority-data`: the cluster CA.
    pub ca_data: String,
    /// `client-certificate-data`: the admin's client certificate.
    pub client_cert_data: String,
    /// `client-key-data`: the admin's private key. Secret.
    pub client_key_data: String,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("context", &self.context)
            .field("server", &self.server)
            .field("ca_data", &self.ca_data)
            .field("client_cert_data", &self.client_cert_data)
            .field("client_key_data", &"<redacted>")
            .finish()
    }
}

impl Entry {
    /// Refuses what would make a broken kubeconfig. Messages never show the
    /// values.
    fn validate(&self) -> Result<(), Error> {
        if self.context.is_empty() || self.context.chars().any(char::is_control) {
            return Err(Error::Entry(
                "the context name is empty or holds control characters".to_string(),
            ));
        }
        if self.server.is_empty()
            || self
                .server
                .chars()
                .any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(Error::Entry(
                "the server address is empty or holds white space".to_string(),
            ));
        }
        self.validate_data().map_err(Error::Entry)
    }

    /// The certificate and key data must be base64, as kubectl decodes them.
    fn validate_data(&self) -> Result<(), String> {
        for (data, what) in [
            (&self.ca_data, "CA"),
            (&self.client_cert_data, "client certificate"),
            (&self.client_key_data, "client key"),
        ] {
            let decoded = base64::engine::general_purpose::STANDARD.decode(data.as_bytes());
            if data.is_empty() || decoded.is_err() {
                return Err(format!("the {what} data is not base64"));
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a kubeconfig kina can edit: {what}; it was left unchanged", path.display())]
    Invalid { path: PathBuf, what: String },
    #[error(
        "cannot lock kubeconfig {}: lock file {} still exists after {} s; if no kubectl, kind or kina is editing the kubeconfig, the lock is stale: remove it",
        file.display(),
        lock.display(),
        waited.as_secs_f32()
    )]
    Locked {
        file: PathBuf,
        lock: PathBuf,
        waited: Duration,
    },
    #[error("invalid kubeconfig entry: {0}")]
    Entry(String),
    #[error("the cluster's admin.conf cannot be used: {0}")]
    AdminConf(String),
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}

/// The kubeconfig files kubectl reads, in order: the entries of
/// `$KUBECONFIG` (empty ones and repeats dropped), or `~/.kube/config` when
/// it names none.
pub fn search_path(env_kubeconfig: Option<&OsStr>, home: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = Vec::new();
    for file in env_kubeconfig
        .map(std::env::split_paths)
        .into_iter()
        .flatten()
    {
        if !file.as_os_str().is_empty() && !files.contains(&file) {
            files.push(file);
        }
    }
    if files.is_empty() {
        files.push(home.join(".kube").join("config"));
    }
    files
}

/// The file kubectl writes a new entry to, given `$KUBECONFIG` and the home
/// directory: the only file of the search path; else its first file that
/// exists; else its last file. (kubectl's `PathOptions.GetDefaultFilename`,
/// which kind follows too; client-go's loading rules would fall back to the
/// first file instead, but it is kubectl's choice that users see.)
pub fn target_file(env_kubeconfig: Option<&OsStr>, home: &Path) -> PathBuf {
    let files = search_path(env_kubeconfig, home);
    if let [only] = files.as_slice() {
        return only.clone();
    }
    files
        .iter()
        .find(|f| f.is_file())
        .or(files.last())
        .cloned()
        .unwrap_or_else(|| home.join(".kube").join("config"))
}

/// The file to merge `context` into: like kubectl, an entry is updated
/// where it already is, so the first file of the search path that holds a
/// cluster, user or context named `context`; otherwise [`target_file`].
pub fn target_file_for(
    env_kubeconfig: Option<&OsStr>,
    home: &Path,
    context: &str,
) -> Result<PathBuf, Error> {
    for file in search_path(env_kubeconfig, home) {
        let text = match read(&file)? {
            Some((text, _)) => text,
            None => continue,
        };
        let holds = edit::holds(&text, context).map_err(|what| Error::Invalid {
            path: file.clone(),
            what,
        })?;
        if holds {
            return Ok(file);
        }
    }
    Ok(target_file(env_kubeconfig, home))
}

/// Adds `entry` to the kubeconfig at `path`, or replaces the cluster, user
/// and context of that name, and makes it the current context if
/// `set_current`. Creates the file (0600, its directory 0700) if needed.
pub fn merge(path: &Path, entry: &Entry, set_current: bool) -> Result<(), Error> {
    merge_waiting(path, entry, set_current, LOCK_TIMEOUT)
}

fn merge_waiting(
    path: &Path,
    entry: &Entry,
    set_current: bool,
    wait: Duration,
) -> Result<(), Error> {
    entry.validate()?;
    edit_file(path, wait, |text| edit::merge(text, entry, set_current)).map(|_| ())
}

/// Removes the cluster, user and context named `context` from the
/// kubeconfig at `path`, and clears `current-context` if it named it.
/// Returns whether anything was removed; a missing file holds nothing.
pub fn remove(path: &Path, context: &str) -> Result<bool, Error> {
    remove_waiting(path, context, LOCK_TIMEOUT)
}

fn remove_waiting(path: &Path, context: &str, wait: Duration) -> Result<bool, Error> {
    if context.is_empty() {
        return Err(Error::Entry("the context name is empty".to_string()));
    }
    if fs::symlink_metadata(path).is_err() {
        return Ok(false);
    }
    edit_file(path, wait, |text| edit::remove(text, context))
}

/// The entry for cluster `cluster` from kubeadm's `admin.conf`: its CA and
/// admin credentials, renamed `kina-<cluster>` and pointed at `server`, the
/// address the host forwards to the API server.
pub fn from_admin_conf(admin_conf_yaml: &str, cluster: &str, server: &str) -> Result<Entry, Error> {
    if cluster.is_empty() || cluster.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::Entry(
            "the cluster name is empty or holds white space".to_string(),
        ));
    }
    let conf = edit::admin_conf(admin_conf_yaml).map_err(Error::AdminConf)?;
    let entry = Entry {
        context: format!("kina-{cluster}"),
        server: server.to_string(),
        ca_data: conf.ca_data,
        client_cert_data: conf.client_cert_data,
        client_key_data: conf.client_key_data,
    };
    entry.validate_data().map_err(Error::AdminConf)?;
    entry.validate()?;
    Ok(entry)
}

/// Under the lock, reads the file, lets `change` edit its text and writes
/// the result if there is one. Returns whether the file was written.
fn edit_file(
    path: &Path,
    wait: Duration,
    change: impl FnOnce(&str) -> Result<Option<String>, String>,
) -> Result<bool, Error> {
    let _lock = Lock::acquire(path, wait)?;
    let (text, mode) = read(path)?.unwrap_or_default();
    let changed = change(&text).map_err(|what| Error::Invalid {
        path: path.to_path_buf(),
        what,
    })?;
    match changed {
        None => Ok(false),
        Some(new) => {
            write_atomic(path, new.as_bytes(), mode)?;
            Ok(true)
        }
    }
}

/// The file's text and metadata, or `None` if there is no file.
fn read(path: &Path) -> Result<Option<(String, Option<fs::Metadata>)>, Error> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("read", path)(e)),
    };
    let meta = fs::metadata(path).map_err(io_error("read the metadata of", path))?;
    let text = String::from_utf8(bytes).map_err(|_| Error::Invalid {
        path: path.to_path_buf(),
        what: "it is not UTF-8 text".to_string(),
    })?;
    Ok(Some((text, Some(meta))))
}

/// `<file>.lock`, client-go's lock file name.
pub fn lock_path(file: &Path) -> PathBuf {
    let mut name = OsString::from(file.as_os_str());
    name.push(".lock");
    PathBuf::from(name)
}

/// client-go's lock: a file that exists only while someone edits.
struct Lock {
    path: PathBuf,
}

impl Lock {
    fn acquire(file: &Path, wait: Duration) -> Result<Lock, Error> {
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            DirBuilder::new()
                .recursive(true)
                .mode(NEW_DIR_MODE)
                .create(dir)
                .map_err(io_error("create directory", dir))?;
        }
        let path = lock_path(file);
        let started = Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(NEW_FILE_MODE)
                .open(&path)
            {
                Ok(_) => return Ok(Lock { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let waited = started.elapsed();
                    if waited >= wait {
                        return Err(Error::Locked {
                            file: file.to_path_buf(),
                            lock: path,
                            waited: wait,
                        });
                    }
                    std::thread::sleep(pause.min(wait - waited));
                    pause = (pause * 2).min(LOCK_MAX_PAUSE);
                }
                Err(e) => return Err(io_error("create lock file", &path)(e)),
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_file(&self.path) {
            tracing::warn!("cannot remove kubeconfig lock {}: {e}", self.path.display());
        }
    }
}

/// Replaces the file's contents in one step: a temporary file beside it
/// with the old file's owner and permissions (0600 for a new file), synced,
/// renamed over it. A symlink is followed, so it stays a symlink.
fn write_atomic(path: &Path, bytes: &[u8], old: Option<fs::Metadata>) -> Result<(), Error> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let is_link = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let target = if is_link {
        fs::canonicalize(path).map_err(io_error("resolve the symlink", path))?
    } else {
        path.to_path_buf()
    };
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = target.file_name().unwrap_or(OsStr::new("kubeconfig"));
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(
        ".kina-{}-{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(NEW_FILE_MODE)
            .open(&tmp)
            .map_err(io_error("create temporary file", &tmp))?;
        let mode = match &old {
            Some(meta) => {
                // Keep the owner when kina runs as root on a user's file;
                // an unprivileged kina cannot, and needs not.
                if let Err(e) = std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid()))
                {
                    tracing::debug!("cannot keep the owner of {}: {e}", path.display());
                }
                meta.mode() & 0o7777
            }
            None => NEW_FILE_MODE,
        };
        file.set_permissions(Permissions::from_mode(mode))
            .map_err(io_error("set the permissions of", &tmp))?;
        file.write_all(bytes).map_err(io_error("write", &tmp))?;
        file.sync_all().map_err(io_error("sync", &tmp))?;
        fs::rename(&tmp, &target).map_err(io_error("replace", &target))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    // The rename is durable once the directory is synced.
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        tracing::debug!("cannot sync directory {}: {e}", dir.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod prop_tests;

/// A kubeconfig holding only `entry`, its context current: what `kina get
/// kubeconfig` prints (kind's `get kubeconfig`).
pub fn render(entry: &Entry) -> Result<String, Error> {
    entry.validate()?;
    edit::merge("", entry, true)
        .map_err(|what| Error::Entry(format!("rendering the kubeconfig: {what}")))?
        .ok_or_else(|| Error::Entry("rendering the kubeconfig gave nothing".to_string()))
}
