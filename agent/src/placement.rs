//! Where the state directory and a filesystem store may be, relative to
//! each other, and whether a store directory is one the agent may write.
//!
//! The state directory holds the host's private signing key (`host_key`),
//! the checkpoint, the spool and the lock. A store is read by others
//! (auditors, the collector, backups, anyone with read access to a share):
//! if the two overlap, the store's readers can take the key and sign forged
//! digests that verify. So `check-config`, `run`, `snapshot`, `key show` and
//! `custody-event` refuse a state directory that is the store, lies inside
//! it, or contains it, before they create or write anything.
//!
//! Paths are compared as the kernel will resolve them when the agent creates
//! them: symlinks (dangling ones too) and `..` are followed through the
//! nearest existing ancestor, the missing rest is taken as the plain
//! directories `create_dir_all` will make ([`resolve`]). On Unix the
//! existing directories are also compared by device and inode, which
//! catches the same directory reached through a bind mount.

use std::io;
use std::path::{Component, Path, PathBuf};

use crate::config::StoreTarget;

/// Symlinks followed while resolving one path before giving up (Linux's
/// own limit is 40): a loop must not hang the check.
const MAX_SYMLINK_HOPS: u32 = 40;

/// How the state directory and the store overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// Both name the same directory.
    Same,
    /// The state directory is the store's or lies below it.
    StateInsideStore,
    /// The store lies below the state directory.
    StoreInsideState,
}

/// `path` made absolute and free of symlinks, `.` and `..`, the way the
/// kernel resolves it: each existing component that is a symlink is
/// replaced by its target (even when the target does not exist yet), `..`
/// drops the component before it once that is resolved, and components
/// that do not exist are kept as the directories that will be created.
/// Like `realpath -m`. A relative `path` is taken against the working
/// directory.
pub fn resolve(path: &Path) -> io::Result<PathBuf> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    let mut out = PathBuf::new();
    // Components still to walk, last first (a stack).
    let mut todo: Vec<PathBuf> = components_reversed(&absolute);
    let mut hops = 0u32;
    while let Some(part) = todo.pop() {
        match part.components().next() {
            Some(Component::Prefix(_)) | Some(Component::RootDir) => out.push(&part),
            Some(Component::CurDir) | None => {}
            Some(Component::ParentDir) => {
                out.pop();
            }
            Some(Component::Normal(name)) => {
                let candidate = out.join(name);
                match std::fs::symlink_metadata(&candidate) {
                    Ok(meta) if meta.file_type().is_symlink() => {
                        hops += 1;
                        if hops > MAX_SYMLINK_HOPS {
                            return Err(io::Error::other(format!(
                                "more than {MAX_SYMLINK_HOPS} symbolic links while resolving {} (a loop?)",
                                path.display()
                            )));
                        }
                        let target = std::fs::read_link(&candidate)?;
                        if target.is_absolute() {
                            out = PathBuf::new();
                        }
                        // A relative target is resolved from the link's
                        // directory, which is `out` as it stands.
                        todo.extend(components_reversed(&target));
                    }
                    _ => out = candidate,
                }
            }
        }
    }
    Ok(out)
}

fn components_reversed(path: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = path
        .components()
        .map(|c| PathBuf::from(c.as_os_str()))
        .collect();
    v.reverse();
    v
}

/// Device and inode of an existing directory (Unix), to recognise one
/// directory reached by two paths (bind mounts).
#[cfg(unix)]
fn dir_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .ok()
        .filter(|m| m.is_dir())
        .map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn dir_identity(_path: &Path) -> Option<(u64, u64)> {
    None
}

/// Whether `inner` is `outer` or lies below it, by resolved path or (for
/// existing directories) by identity of `outer` with `inner` or one of
/// `inner`'s ancestors.
fn is_within(inner: &Path, outer: &Path) -> bool {
    if inner.starts_with(outer) {
        return true;
    }
    let Some(outer_id) = dir_identity(outer) else {
        return false;
    };
    inner.ancestors().any(|a| dir_identity(a) == Some(outer_id))
}

/// How `state_dir` and `store_dir` overlap, if they do. Errors only when a
/// path cannot be resolved (a symlink loop, an unreadable link).
pub fn overlap(state_dir: &Path, store_dir: &Path) -> io::Result<Option<Overlap>> {
    let state = resolve(state_dir)?;
    let store = resolve(store_dir)?;
    let state_in_store = is_within(&state, &store);
    let store_in_state = is_within(&store, &state);
    Ok(match (state_in_store, store_in_state) {
        (true, true) => Some(Overlap::Same),
        (true, false) => Some(Overlap::StateInsideStore),
        (false, true) => Some(Overlap::StoreInsideState),
        (false, false) => None,
    })
}

/// Refuses a state directory that overlaps a filesystem store, with a
/// message naming both paths (as given and as resolved), why, and what to
/// do. Other stores are not on this host's file system: nothing to check.
pub fn check_state_outside_store(state_dir: &Path, store: &StoreTarget) -> Result<(), String> {
    let StoreTarget::Filesystem(store_dir) = store else {
        return Ok(());
    };
    let found = overlap(state_dir, store_dir).map_err(|e| {
        format!(
            "cannot tell whether state_dir {} and the store {} overlap: {e}; fix the path so it resolves",
            state_dir.display(),
            store_dir.display()
        )
    })?;
    let Some(how) = found else {
        return Ok(());
    };
    let resolved = |p: &Path| resolve(p).unwrap_or_else(|_| p.to_path_buf());
    let (rs, rd) = (resolved(state_dir), resolved(store_dir));
    let shown = |given: &Path, r: &Path| {
        if given == r {
            given.display().to_string()
        } else {
            format!("{} (resolves to {})", given.display(), r.display())
        }
    };
    let (state, store) = (shown(state_dir, &rs), shown(store_dir, &rd));
    let relation = match how {
        Overlap::Same => format!("state_dir {state} is the store {store}"),
        Overlap::StateInsideStore => format!("state_dir {state} is inside the store {store}"),
        Overlap::StoreInsideState => format!("the store {store} is inside state_dir {state}"),
    };
    let why = match how {
        Overlap::Same | Overlap::StateInsideStore => {
            "the agent keeps its private host signing key (host_key), checkpoint, spool and lock in state_dir, \
             so the key would be readable by the store's readers (auditors, the collector, anyone with read \
             access to the store), who could sign forged digests that verify"
        }
        Overlap::StoreInsideState => {
            "the store's readers (auditors, the collector, backups of the store) would be given the directory \
             that holds the agent's private host signing key (host_key), checkpoint and spool, so the key would \
             be readable by the store's readers, who could sign forged digests that verify"
        }
    };
    Err(format!(
        "{relation}: {why}. Keep them apart: put state_dir on this host's local disk outside the store \
         (the default is {}) and the store in a directory of its own, ideally on a physically separate system",
        crate::config::DEFAULT_STATE_DIR
    ))
}

/// The filesystem store refuses a non-empty directory without its marker
/// (so a typo cannot scatter evidence into an unrelated directory), and a
/// path that is not a directory. Both are permanent until someone changes
/// the configuration, so `check-config` reports them and `run` refuses to
/// start on them instead of retrying. A missing directory is fine: it will
/// be created.
pub fn check_store_dir(dir: &Path) -> Result<(), String> {
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => {
            return Err("exists and is not a directory; point the store at a directory".to_string())
        }
        Ok(_) => {}
        Err(_) => return Ok(()), // absent (or unreachable): FsStore::open says more
    }
    let Ok(mut entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    if entries.next().is_some() && !dir.join(custody_store::fs::MARKER_NAME).exists() {
        return Err(format!(
            "the directory is not empty and has no {} marker, so it is not a custody store; use a new or empty \
             directory, or the store's own root",
            custody_store::fs::MARKER_NAME
        ));
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn resolve_follows_symlinks_and_dotdot_through_missing_tails() {
        let dir = tempfile::tempdir().unwrap();
        let root = resolve(dir.path()).unwrap();
        std::fs::create_dir(root.join("real")).unwrap();
        symlink(root.join("real"), root.join("link")).unwrap();
        symlink("real/not-yet", root.join("dangling")).unwrap();
        assert_eq!(
            resolve(&root.join("link/a/b")).unwrap(),
            root.join("real/a/b")
        );
        assert_eq!(
            resolve(&root.join("link/../real/./x")).unwrap(),
            root.join("real/x")
        );
        assert_eq!(
            resolve(&root.join("missing/../real")).unwrap(),
            root.join("real")
        );
        assert_eq!(
            resolve(&root.join("dangling/s")).unwrap(),
            root.join("real/not-yet/s")
        );
        symlink(root.join("loop"), root.join("loop")).unwrap();
        assert!(resolve(&root.join("loop/x")).is_err());
    }

    #[test]
    fn overlaps_are_found_in_every_direction() {
        let dir = tempfile::tempdir().unwrap();
        let root = resolve(dir.path()).unwrap();
        let store = root.join("store");
        std::fs::create_dir(&store).unwrap();
        symlink(&store, root.join("alias")).unwrap();
        let cases = [
            (root.join("store"), Some(Overlap::Same)),
            (root.join("alias"), Some(Overlap::Same)),
            (root.join("store/state"), Some(Overlap::StateInsideStore)),
            (
                root.join("alias/x/../state"),
                Some(Overlap::StateInsideStore),
            ),
            (root.clone(), Some(Overlap::StoreInsideState)),
            (root.join("state"), None),
            (root.join("store-2"), None),
        ];
        for (state, want) in cases {
            assert_eq!(
                overlap(&state, &store).unwrap(),
                want,
                "{}",
                state.display()
            );
        }
    }

    #[test]
    fn the_refusal_names_both_paths_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let store = resolve(dir.path()).unwrap().join("store");
        let err = check_state_outside_store(
            &store.join("state"),
            &StoreTarget::Filesystem(store.clone()),
        )
        .unwrap_err();
        assert!(err.contains(&store.display().to_string()), "{err}");
        assert!(
            err.contains(&store.join("state").display().to_string()),
            "{err}"
        );
        assert!(err.contains("host_key"), "{err}");
        assert!(err.contains("readable by the store's readers"), "{err}");
        assert!(check_state_outside_store(
            &store.join("state"),
            &StoreTarget::Filesystem(dir.path().join("elsewhere"))
        )
        .is_ok());
    }
}
