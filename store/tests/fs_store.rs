//! What only the filesystem store can get wrong: its on-disk layout and
//! modes, temp files, damaged bookkeeping, and refusing the wrong directory.
//! These use the blocking `*_sync` API, as the verifier does (no runtime).
//! The Windows build runs them under Wine (.ci/run), less the ones that need
//! Unix modes, symlinks or mounts.

use std::fs;
#[cfg(unix)]
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
#[cfg(unix)]
use std::process::Command;

use custody_store::{FsStore, PutOptions, PutOutcome, StoreError};
use time::macros::datetime;
use time::OffsetDateTime;

const T0: OffsetDateTime = datetime!(2026-01-01 00:00:00 UTC);
const LATER: OffsetDateTime = datetime!(2026-07-01 00:00:00 UTC);
/// SHA-256 of `hello`.
const HELLO_SHA256: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

fn until(t: OffsetDateTime) -> PutOptions {
    PutOptions { retain_until: t }
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Mode 0444 on Unix; the read-only attribute on Windows.
fn assert_read_only(path: &Path) {
    #[cfg(unix)]
    assert_eq!(mode(path), 0o444, "{}", path.display());
    #[cfg(not(unix))]
    assert!(
        fs::metadata(path).unwrap().permissions().readonly(),
        "{} is not read-only",
        path.display()
    );
}

/// Removes a store file, as damage or an operator would: on Windows its
/// read-only attribute must be cleared first.
fn remove(path: impl AsRef<Path>) -> std::io::Result<()> {
    let path = path.as_ref();
    #[cfg(not(unix))]
    if let Ok(meta) = fs::metadata(path) {
        let mut p = meta.permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        p.set_readonly(false);
        fs::set_permissions(path, p)?;
    }
    fs::remove_file(path)
}

fn new_store() -> (tempfile::TempDir, FsStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path().join("store")).unwrap();
    (dir, store)
}

#[test]
fn golden_layout_and_read_only_files() {
    let (_dir, store) = new_store();
    let root = store.root().to_path_buf();
    assert_eq!(
        fs::read_to_string(root.join(".custody-store.json")).unwrap(),
        r#"{"format":"custody.fsstore.v1"}"#
    );

    let retain = datetime!(2026-07-01 08:00:00.5 +08:00);
    assert_eq!(
        store
            .put_sync("v1/h/a.zst", b"hello", until(retain))
            .unwrap(),
        PutOutcome::Created
    );
    assert_eq!(fs::read(root.join("v1/h/a.zst")).unwrap(), b"hello");
    assert_eq!(
        fs::read_to_string(root.join(".retention/v1/h/a.zst.json")).unwrap(),
        format!(
            r#"{{"format":"custody.retention.v1","retain_until":"2026-07-01T00:00:00.500000Z","sha256":"{HELLO_SHA256}","len":5}}"#
        )
    );
    assert_read_only(&root.join("v1/h/a.zst"));
    assert_read_only(&root.join(".retention/v1/h/a.zst.json"));

    store.set_legal_hold_sync("v1/h/a.zst", true).unwrap();
    let hold: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join(".holds/v1/h/a.zst")).unwrap()).unwrap();
    assert_eq!(hold["format"], "custody.hold.v1");
    store.set_legal_hold_sync("v1/h/a.zst", true).unwrap();
    store.set_legal_hold_sync("v1/h/a.zst", false).unwrap();
    assert!(!root.join(".holds/v1/h/a.zst").exists());
}

#[test]
fn conflict_leaves_the_original_untouched() {
    let (_dir, store) = new_store();
    store.put_sync("k", b"hello", until(LATER)).unwrap();
    let record = store.root().join(".retention/k.json");
    let record_before = fs::read(&record).unwrap();
    assert!(matches!(
        store.put_sync("k", b"jello", until(T0)),
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(fs::read(store.root().join("k")).unwrap(), b"hello");
    assert_eq!(fs::read(&record).unwrap(), record_before);
    assert_eq!(stray_temp_files(store.root()), Vec::<String>::new());
}

/// Every `.tmp-*` file under `root`, relative.
fn stray_temp_files(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                found.push(
                    entry
                        .path()
                        .strip_prefix(root)
                        .unwrap()
                        .display()
                        .to_string(),
                );
            }
        }
    }
    found
}

#[test]
fn temp_files_and_links_are_never_listed() {
    let (_dir, store) = new_store();
    let root = store.root().to_path_buf();
    store.put_sync("v1/h/a", b"1", until(LATER)).unwrap();
    assert_eq!(
        stray_temp_files(&root),
        Vec::<String>::new(),
        "a finished put leaves no temp file"
    );
    // What a crash mid-put leaves behind, at every level.
    fs::write(root.join(".tmp-123-0-abc"), b"partial").unwrap();
    fs::write(root.join("v1/h/.tmp-123-1-abc"), b"partial").unwrap();
    fs::create_dir_all(root.join("v1/.tmp-dir")).unwrap();
    fs::write(root.join("v1/.tmp-dir/x"), b"hidden").unwrap();
    // Links are not followed, whether to files or directories.
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(root.join("v1/h/a"), root.join("v1/h/link")).unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("v1/elsewhere")).unwrap();
        assert!(matches!(
            store.get_sync("v1/h/link"),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            store.get_sync("v1/elsewhere/secret"),
            Err(StoreError::Corrupt { .. })
        ));
    }

    assert_eq!(store.list_sync("").unwrap(), ["v1/h/a"]);
    assert_eq!(store.list_sync("v1/").unwrap(), ["v1/h/a"]);
    // Stale temp files do not disturb later puts or prunes.
    store.put_sync("v1/h/b", b"2", until(T0)).unwrap();
    assert_eq!(store.prune_sync(LATER).unwrap().deleted, ["v1/h/b"]);
}

#[test]
fn prune_keeps_what_it_cannot_prove_expired() {
    let (_dir, store) = new_store();
    let root = store.root().to_path_buf();
    for key in ["a/missing", "a/garbage", "a/future-format", "a/expired"] {
        store.put_sync(key, b"x", until(T0)).unwrap();
    }
    remove(root.join(".retention/a/missing.json")).unwrap();
    let garbage = root.join(".retention/a/garbage.json");
    remove(&garbage).unwrap();
    fs::write(&garbage, b"{not json").unwrap();
    let future = root.join(".retention/a/future-format.json");
    remove(&future).unwrap();
    fs::write(
        &future,
        br#"{"format":"custody.retention.v9","retain_until":"2000-01-01T00:00:00.000000Z"}"#,
    )
    .unwrap();

    let report = store.prune_sync(LATER).unwrap();
    assert_eq!(report.deleted, ["a/expired"]);
    let unproven: Vec<&str> = report.unproven.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(unproven, ["a/future-format", "a/garbage", "a/missing"]);
    let why = |k: &str| {
        report
            .unproven
            .iter()
            .find(|(key, _)| key == k)
            .unwrap()
            .1
            .clone()
    };
    assert!(why("a/missing").contains("missing"), "{}", why("a/missing"));
    assert!(
        why("a/future-format").contains("unknown format"),
        "{}",
        why("a/future-format")
    );
    for key in unproven {
        assert_eq!(store.get_sync(key).unwrap(), b"x", "{key} must survive");
    }
    // The object and its record both went.
    assert!(!root.join("a/expired").exists() && !root.join(".retention/a/expired.json").exists());

    match store.head_sync("a/missing") {
        Err(StoreError::Corrupt { what, why }) => {
            assert!(what.contains("a/missing"), "{what}");
            assert!(
                why.contains("retention record") && why.contains("missing"),
                "{why}"
            );
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn head_notices_a_record_that_disagrees_with_the_object() {
    let (_dir, store) = new_store();
    store.put_sync("k", b"hello", until(LATER)).unwrap();
    let record = store.root().join(".retention/k.json");
    let body = fs::read_to_string(&record)
        .unwrap()
        .replace(r#""len":5"#, r#""len":6"#);
    remove(&record).unwrap();
    fs::write(&record, body).unwrap();
    assert!(
        matches!(store.head_sync("k"), Err(StoreError::Corrupt { why, .. }) if why.contains("5 bytes"))
    );
}

#[test]
fn interrupted_put_is_finished_by_the_retry() {
    let (_dir, store) = new_store();
    let root = store.root().to_path_buf();
    // A crash between publishing the retention record and the object.
    store.put_sync("s/1", b"hello", until(T0)).unwrap();
    remove(root.join("s/1")).unwrap();
    assert!(store.head_sync("s/1").unwrap().is_none());

    // The retry asks for a later retain-until: the old record must not cap it.
    assert_eq!(
        store.put_sync("s/1", b"hello", until(LATER)).unwrap(),
        PutOutcome::Created
    );
    assert_eq!(store.head_sync("s/1").unwrap().unwrap().retain_until, LATER);
    // And an orphan for different bytes is replaced, not trusted.
    store.put_sync("s/2", b"hello", until(LATER)).unwrap();
    remove(root.join("s/2")).unwrap();
    store.put_sync("s/2", b"bye", until(LATER)).unwrap();
    assert_eq!(store.head_sync("s/2").unwrap().unwrap().len, 3);
}

#[test]
fn prune_sweeps_expired_orphan_records_only() {
    let (_dir, store) = new_store();
    let root = store.root().to_path_buf();
    store.put_sync("o/old", b"1", until(T0)).unwrap();
    store.put_sync("o/new", b"2", until(LATER)).unwrap();
    remove(root.join("o/old")).unwrap();
    remove(root.join("o/new")).unwrap();
    let report = store.prune_sync(T0 + time::Duration::days(1)).unwrap();
    assert!(
        report.deleted.is_empty(),
        "orphans are not objects: {report:?}"
    );
    assert!(!root.join(".retention/o/old.json").exists());
    assert!(
        root.join(".retention/o/new.json").exists(),
        "an unexpired record may belong to a put in progress"
    );
}

#[test]
fn open_refuses_a_directory_that_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
    let err = FsStore::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
    assert!(
        err.contains("not a custody store") && err.contains("new or empty directory"),
        "{err}"
    );
    assert!(
        !dir.path().join(".custody-store.json").exists(),
        "nothing written into a foreign directory"
    );

    let err = FsStore::open_existing(dir.path()).unwrap_err().to_string();
    assert!(err.contains("not a custody store"), "{err}");
    let missing = dir.path().join("nope");
    let err = FsStore::open_existing(&missing).unwrap_err().to_string();
    assert!(err.contains("no such directory"), "{err}");
    assert!(!missing.exists(), "readers never create anything");

    // A regular file where the root should be, or above it.
    let file = dir.path().join("notes.txt");
    assert!(FsStore::open(&file)
        .unwrap_err()
        .to_string()
        .contains("not a directory"));
    let err = FsStore::open(file.join("store")).unwrap_err().to_string();
    assert!(err.contains(&file.display().to_string()), "{err}");
}

#[test]
fn open_accepts_empty_and_existing_stores_and_refuses_unknown_formats() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).unwrap();
    store.put_sync("k", b"v", until(LATER)).unwrap();
    // Reopening (agent restart) and reading (verifier) both work.
    assert_eq!(
        FsStore::open(dir.path()).unwrap().get_sync("k").unwrap(),
        b"v"
    );
    assert_eq!(
        FsStore::open_existing(dir.path())
            .unwrap()
            .list_sync("")
            .unwrap(),
        ["k"]
    );

    let marker = dir.path().join(".custody-store.json");
    remove(&marker).unwrap();
    fs::write(&marker, br#"{"format":"custody.fsstore.v2"}"#).unwrap();
    for result in [
        FsStore::open(dir.path()),
        FsStore::open_existing(dir.path()),
    ] {
        match result {
            Err(StoreError::Corrupt { why, .. }) => {
                assert!(why.contains("unknown store format"), "{why}")
            }
            other => panic!("expected an unknown-format refusal, got {other:?}"),
        }
    }
}

/// Makes `dir` unwritable even for root (`chattr +i`) and undoes it on drop.
#[cfg(unix)]
struct Immutable<'a>(&'a Path);

#[cfg(unix)]
impl<'a> Immutable<'a> {
    fn try_new(dir: &'a Path) -> Option<Immutable<'a>> {
        let ok = Command::new("chattr")
            .arg("+i")
            .arg(dir)
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then_some(Immutable(dir))
    }
}

#[cfg(unix)]
impl Drop for Immutable<'_> {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(self.0).status();
    }
}

#[cfg(unix)]
fn writable(dir: &Path) -> bool {
    let probe = dir.join("probe");
    let ok = fs::write(&probe, b"").is_ok();
    let _ = remove(&probe);
    ok
}

/// Permission bits stop an ordinary user; root ignores them, so as root the
/// directory is made immutable instead. Where neither is possible the test
/// says so and relies on the unit test of the error wording (fs.rs).
#[cfg(unix)]
#[test]
fn unwritable_root_is_refused_with_the_fix_in_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = FsStore::open(&root).unwrap();
    store.put_sync("before", b"1", until(LATER)).unwrap();

    fs::set_permissions(&root, fs::Permissions::from_mode(0o555)).unwrap();
    let _immutable = if writable(&root) {
        Immutable::try_new(&root)
    } else {
        None
    };
    if writable(&root) {
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        eprintln!(
            "SKIPPED: cannot make {} unwritable here (root without chattr)",
            root.display()
        );
        return;
    }
    let err = FsStore::open(&root).unwrap_err().to_string();
    assert!(
        err.contains("permission denied: make") && err.contains("writable by the agent's user"),
        "{err}"
    );
    assert!(err.contains(&root.display().to_string()), "{err}");
    let err = store.put_sync("after", b"2", until(LATER)).unwrap_err();
    assert!(err.is_transient());
    assert!(err.to_string().contains("permission denied"), "{err}");
    // ".retention" itself is writable, yet no record is left for the object that was not written.
    assert!(!root.join(".retention/after.json").exists());
    // Readers still work on a read-only store.
    assert_eq!(
        FsStore::open_existing(&root)
            .unwrap()
            .get_sync("before")
            .unwrap(),
        b"1"
    );
    drop(_immutable);
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A small tmpfs mounted for one test, unmounted on drop.
#[cfg(unix)]
struct TinyMount(std::path::PathBuf);

#[cfg(unix)]
impl TinyMount {
    fn try_new(dir: &Path) -> Option<TinyMount> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "custody-test"])
            .arg(dir)
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then(|| TinyMount(dir.to_path_buf()))
    }
}

#[cfg(unix)]
impl Drop for TinyMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A real full disk (needs permission to mount a tmpfs; skipped otherwise,
/// leaving the unit test of the wording in fs.rs).
#[cfg(unix)]
#[test]
fn disk_full_says_so_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mount) = TinyMount::try_new(dir.path()) else {
        eprintln!("SKIPPED: cannot mount a tmpfs at {}", dir.path().display());
        return;
    };
    let store = FsStore::open(&mount.0).unwrap();
    store.put_sync("small", b"fits", until(LATER)).unwrap();
    let big = vec![7u8; 1024 * 1024];
    let err = store.put_sync("v1/big", &big, until(LATER)).unwrap_err();
    assert!(err.is_transient());
    let msg = err.to_string();
    assert!(
        msg.contains("disk full: free space on the filesystem holding"),
        "{msg}"
    );
    assert!(msg.contains("nothing was written"), "{msg}");
    assert_eq!(store.list_sync("").unwrap(), ["small"]);
    assert_eq!(stray_temp_files(&mount.0), Vec::<String>::new());
    assert!(!mount.0.join(".retention/v1/big.json").exists());
    // The failed name is still free: a smaller object under it goes through.
    store
        .put_sync("v1/big", &big[..1024], until(LATER))
        .unwrap();
}
