//! What differs between Unix and Windows for following files: who a file
//! is (device and inode; volume serial number and file index), its times
//! and link count, positional reads, opening a log without getting in the
//! way of the program that rotates it, and making a directory's new names
//! durable.
//!
//! Everything else in the agent is written once; this module (and
//! `winservice` for the Service Control Manager) holds the two versions.

use std::fs::File;
use std::io;
use std::path::Path;

use crate::fingerprint::FileKey;

/// What the tailer needs to know about a file, the same on every OS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Who the file is on disk: device and inode on Unix, volume serial
    /// number and file index on Windows.
    pub key: FileKey,
    pub len: u64,
    pub is_file: bool,
    /// Last data change, as seconds and nanoseconds since the Unix epoch.
    pub mtime: (i64, i64),
    /// Last data or metadata change (Unix ctime, Windows ChangeTime).
    pub ctime: (i64, i64),
    /// Names the file still has; 0 once it is deleted (on Windows also while
    /// its deletion is pending because a handle is still open).
    pub links: u64,
    /// Owner, group and `st_mode` on Unix. Windows controls access with
    /// ACLs instead: all three are 0 there.
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

pub use imp::{
    create_private_dir, describe_access, open_log, read_at, stat_file, stat_path, sync_dir,
};

/// What a path that is not a regular file is (a FIFO, a directory, a
/// device, a socket), in words for the log and `status`: a glob that
/// matches one skips it, and says so rather than skipping it silently.
/// Follows symbolic links, like [`stat_path`].
pub fn kind_of(path: &Path) -> &'static str {
    let Ok(meta) = std::fs::metadata(path) else {
        return "not a regular file";
    };
    let ft = meta.file_type();
    if ft.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if ft.is_char_device() {
            return "a character device";
        }
        if ft.is_block_device() {
            return "a block device";
        }
        if ft.is_socket() {
            return "a socket";
        }
    }
    "not a regular file"
}

/// Reads up to `buf.len()` bytes at `offset` (fewer only at the end of the
/// file), without moving any shared file position the caller relies on.
pub fn read_at_most(file: &File, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match read_at(file, &mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(unix)]
mod imp {
    use super::*;
    use std::os::unix::fs::{FileExt, MetadataExt};

    fn of(meta: &std::fs::Metadata) -> Stat {
        Stat {
            key: FileKey {
                device: meta.dev(),
                inode: meta.ino(),
            },
            len: meta.len(),
            is_file: meta.is_file(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            links: meta.nlink(),
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode(),
        }
    }

    /// `stat(2)`: follows symbolic links, like opening the file does.
    pub fn stat_path(path: &Path) -> io::Result<Stat> {
        std::fs::metadata(path).map(|m| of(&m))
    }

    /// `fstat(2)` on an open file.
    pub fn stat_file(file: &File) -> io::Result<Stat> {
        file.metadata().map(|m| of(&m))
    }

    /// Opens a log read-only. On Unix an open file never stops another
    /// program from renaming or deleting it.
    pub fn open_log(path: &Path) -> io::Result<File> {
        File::open(path)
    }

    pub fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        file.read_at(buf, offset)
    }

    /// fsyncs a directory so that names created or removed in it survive a
    /// crash.
    pub fn sync_dir(dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    /// Creates `dir` (and missing parents) so that only its owner can
    /// enter it: mode 0700. An existing directory is left as it is.
    pub fn create_private_dir(dir: &Path) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    }

    /// Who may read the file, for a "permission denied" message.
    pub fn describe_access(path: &Path) -> String {
        match stat_path(path) {
            Ok(s) => format!("mode {:o}, owner {}:{}", s.mode & 0o7777, s.uid, s.gid),
            Err(_) => String::new(),
        }
    }
}

#[cfg(windows)]
#[allow(unsafe_code)]
mod imp {
    use super::*;
    use std::fs::OpenOptions;
    use std::os::windows::fs::{FileExt, OpenOptionsExt};
    use std::os::windows::io::AsRawHandle;

    use windows_sys::Win32::Storage::FileSystem::{
        FileBasicInfo, FileIdInfo, FileStandardInfo, GetFileInformationByHandle,
        GetFileInformationByHandleEx, BY_HANDLE_FILE_INFORMATION, FILE_BASIC_INFO,
        FILE_FLAG_BACKUP_SEMANTICS, FILE_ID_INFO, FILE_READ_ATTRIBUTES, FILE_SHARE_DELETE,
        FILE_SHARE_READ, FILE_SHARE_WRITE, FILE_STANDARD_INFO,
    };

    /// Every share mode: while the agent holds a log open, the program that
    /// writes it can still append (write), and its rotation can still
    /// rename or delete it (delete). Without `FILE_SHARE_DELETE` IIS's or
    /// NXLog's rotation would fail with a sharing violation.
    const SHARE_ALL: u32 = FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE;

    /// 100 ns intervals between 1601-01-01 (FILETIME) and 1970-01-01.
    const FILETIME_UNIX_EPOCH: i64 = 116_444_736_000_000_000;

    fn unix_time(filetime: i64) -> (i64, i64) {
        let since = filetime - FILETIME_UNIX_EPOCH;
        (
            since.div_euclid(10_000_000),
            since.rem_euclid(10_000_000) * 100,
        )
    }

    /// Windows' device and inode: `FileIdInfo` (the 64-bit volume serial
    /// number and the 128-bit file id, folded to 64 bits; on NTFS the upper
    /// half is zero, so this is the file index), or where that class is not
    /// available `GetFileInformationByHandle`'s 32-bit serial and 64-bit
    /// index.
    fn identity(file: &File) -> io::Result<FileKey> {
        let handle = file.as_raw_handle();
        let mut info = FILE_ID_INFO::default();
        // SAFETY: `handle` is a valid open handle owned by `file`; `info`
        // is a writable FILE_ID_INFO, the type FileIdInfo names.
        let ok = unsafe {
            GetFileInformationByHandleEx(
                handle,
                FileIdInfo,
                (&mut info as *mut FILE_ID_INFO).cast(),
                std::mem::size_of::<FILE_ID_INFO>() as u32,
            )
        } != 0;
        if ok {
            let id = info.FileId.Identifier;
            let half = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
            return Ok(FileKey {
                device: info.VolumeSerialNumber,
                inode: half(&id[..8]) ^ half(&id[8..]),
            });
        }
        let mut id = BY_HANDLE_FILE_INFORMATION::default();
        // SAFETY: as above, with the struct GetFileInformationByHandle fills.
        if unsafe { GetFileInformationByHandle(handle, &mut id) } == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(FileKey {
            device: u64::from(id.dwVolumeSerialNumber),
            inode: (u64::from(id.nFileIndexHigh) << 32) | u64::from(id.nFileIndexLow),
        })
    }

    /// Identity ([`identity`]), size, times and links of an open handle:
    /// `FileStandardInfo` for the size, link count and pending deletion,
    /// `FileBasicInfo` for the times.
    pub fn stat_file(file: &File) -> io::Result<Stat> {
        let key = identity(file)?;
        let handle = file.as_raw_handle();
        let mut standard = FILE_STANDARD_INFO::default();
        let mut basic = FILE_BASIC_INFO::default();
        // SAFETY: `handle` is a valid open handle owned by `file` for the
        // duration of these calls; each output is a properly sized,
        // writable struct of the type the information class names.
        let ok = unsafe {
            GetFileInformationByHandleEx(
                handle,
                FileStandardInfo,
                (&mut standard as *mut FILE_STANDARD_INFO).cast(),
                std::mem::size_of::<FILE_STANDARD_INFO>() as u32,
            ) != 0
                && GetFileInformationByHandleEx(
                    handle,
                    FileBasicInfo,
                    (&mut basic as *mut FILE_BASIC_INFO).cast(),
                    std::mem::size_of::<FILE_BASIC_INFO>() as u32,
                ) != 0
        };
        if !ok {
            return Err(io::Error::last_os_error());
        }
        Ok(Stat {
            key,
            len: u64::try_from(standard.EndOfFile).unwrap_or(0),
            is_file: !standard.Directory,
            mtime: unix_time(basic.LastWriteTime),
            ctime: unix_time(basic.ChangeTime),
            links: if standard.DeletePending {
                0
            } else {
                u64::from(standard.NumberOfLinks)
            },
            uid: 0,
            gid: 0,
            mode: 0,
        })
    }

    /// Opens the path for its attributes only (no read or write access,
    /// every share mode, directories too), so looking never conflicts with
    /// the writer or the rotation.
    pub fn stat_path(path: &Path) -> io::Result<Stat> {
        let file = OpenOptions::new()
            .access_mode(FILE_READ_ATTRIBUTES)
            .share_mode(SHARE_ALL)
            .custom_flags(FILE_FLAG_BACKUP_SEMANTICS)
            .open(path)?;
        stat_file(&file)
    }

    /// Opens a log read-only with every share mode (see [`SHARE_ALL`]). A
    /// log renamed or deleted while open stays readable through this handle
    /// until it is closed, as on Unix.
    pub fn open_log(path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .share_mode(SHARE_ALL)
            .open(path)
    }

    /// `ReadFile` at an offset (an OVERLAPPED position). It moves the
    /// handle's file pointer, which the agent never uses.
    pub fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        file.seek_read(buf, offset)
    }

    /// Windows has no directory fsync: NTFS writes a new or removed name to
    /// its journal, and std cannot open a directory as a file to flush it.
    /// The files' own data are flushed with `sync_all` (FlushFileBuffers)
    /// before they are renamed into place.
    pub fn sync_dir(_dir: &Path) -> io::Result<()> {
        Ok(())
    }

    /// Only SYSTEM, the Administrators group and the owner (whoever created
    /// it: SYSTEM for the service), with full control, for the directory
    /// and everything created under it; nothing inherited (`P`).
    /// `C:\ProgramData` would otherwise let every user read what is in it,
    /// the host key included.
    pub const PRIVATE_DIR_SDDL: &str = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FA;;;OW)";

    /// Creates `dir` (and missing parents) and, when it did not exist,
    /// replaces its inherited ACL with [`PRIVATE_DIR_SDDL`]. An existing
    /// directory is left as it is (its ACL is the administrator's choice).
    pub fn create_private_dir(dir: &Path) -> io::Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        std::fs::create_dir_all(dir)?;
        restrict_to_administrators(dir)
    }

    /// Sets [`PRIVATE_DIR_SDDL`] as the protected DACL of `path`.
    pub fn restrict_to_administrators(path: &Path) -> io::Result<()> {
        use std::os::windows::ffi::OsStrExt;
        use windows_sys::Win32::Foundation::LocalFree;
        use windows_sys::Win32::Security::Authorization::{
            ConvertStringSecurityDescriptorToSecurityDescriptorW, SetNamedSecurityInfoW,
            SDDL_REVISION_1, SE_FILE_OBJECT,
        };
        use windows_sys::Win32::Security::{
            GetSecurityDescriptorDacl, ACL, DACL_SECURITY_INFORMATION,
            PROTECTED_DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR,
        };
        let wide = |s: &std::ffi::OsStr| s.encode_wide().chain([0]).collect::<Vec<u16>>();
        let sddl = wide(PRIVATE_DIR_SDDL.as_ref());
        let name = wide(path.as_os_str());
        let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        // SAFETY: `sddl` is NUL-terminated UTF-16; on success `sd` points to
        // a descriptor allocated by the system, freed below with LocalFree.
        if unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                sddl.as_ptr(),
                SDDL_REVISION_1,
                &mut sd,
                std::ptr::null_mut(),
            )
        } == 0
        {
            return Err(io::Error::last_os_error());
        }
        let (mut present, mut defaulted) = (0, 0);
        let mut dacl: *mut ACL = std::ptr::null_mut();
        // SAFETY: `sd` is the valid descriptor made above; the DACL pointer
        // points into it and is used before it is freed. `name` is
        // NUL-terminated UTF-16.
        let result = unsafe {
            if GetSecurityDescriptorDacl(sd, &mut present, &mut dacl, &mut defaulted) == 0 {
                Err(io::Error::last_os_error())
            } else {
                match SetNamedSecurityInfoW(
                    name.as_ptr(),
                    SE_FILE_OBJECT,
                    DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    dacl,
                    std::ptr::null(),
                ) {
                    0 => Ok(()),
                    code => Err(io::Error::from_raw_os_error(code as i32)),
                }
            }
        };
        // SAFETY: `sd` was allocated by the conversion above and not freed yet.
        unsafe { LocalFree(sd) };
        result
    }

    /// Who may read the file, for a "permission denied" message.
    pub fn describe_access(path: &Path) -> String {
        format!("access is set by its ACL: see `icacls {}`", path.display())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// The control for the share-mode test below: a reader that leaves
        /// out FILE_SHARE_DELETE makes another program's rename fail with a
        /// sharing violation (Windows and Wine alike), so the share mode is
        /// what keeps the agent out of the rotation's way.
        #[test]
        fn without_share_delete_a_rotation_fails() {
            let dir = tempfile::tempdir().unwrap();
            let live = dir.path().join("u_ex261130.log");
            std::fs::write(&live, b"x\r\n").unwrap();
            let blocking = OpenOptions::new()
                .read(true)
                .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE)
                .open(&live)
                .unwrap();
            let err = std::fs::rename(&live, dir.path().join("old.log")).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(32), "{err}"); // ERROR_SHARING_VIOLATION
            drop(blocking);
            let _agent = open_log(&live).unwrap();
            std::fs::rename(&live, dir.path().join("old.log")).unwrap();
        }

        #[test]
        fn filetimes_convert_to_unix_time() {
            assert_eq!(unix_time(FILETIME_UNIX_EPOCH), (0, 0));
            assert_eq!(unix_time(FILETIME_UNIX_EPOCH + 15), (0, 1500));
            assert_eq!(unix_time(FILETIME_UNIX_EPOCH - 1), (-1, 999_999_900));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// The identity survives a rename while the file is open, the handle
    /// still reads it, and deleting it while open is allowed (Windows'
    /// share modes) and shows as no links left.
    #[test]
    fn an_open_log_may_be_renamed_and_deleted_and_keeps_its_identity() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("u_ex261130.log");
        let moved = dir.path().join("u_ex261130.log.1");
        std::fs::write(&live, b"first line\n").unwrap();
        let file = open_log(&live).unwrap();
        let before = stat_file(&file).unwrap();
        assert_eq!(stat_path(&live).unwrap().key, before.key);
        assert!(before.is_file && before.links == 1 && before.len == 11);
        assert!(!stat_path(dir.path()).unwrap().is_file);

        std::fs::rename(&live, &moved).expect("rename while the agent has the log open");
        // Found again by its new name: the same file. (Through the handle
        // opened before the rename, Wine 8 reports volume serial 0 while
        // the file id stays; Windows keeps both. The agent compares keys
        // taken by path, or right after opening, so either way it works.)
        assert_eq!(stat_path(&moved).unwrap().key, before.key);
        let after = stat_file(&file).unwrap();
        assert_eq!(after.key.inode, before.key.inode);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&moved)
            .unwrap()
            .write_all(b"second\n")
            .unwrap();
        let mut buf = [0u8; 64];
        let n = read_at_most(&file, 0, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"first line\nsecond\n");
        assert_eq!(read_at_most(&file, 11, &mut buf).unwrap(), 7);

        std::fs::write(&live, b"new file\n").unwrap();
        assert_ne!(stat_path(&live).unwrap().key, before.key);

        std::fs::remove_file(&moved).expect("delete while the agent has the log open");
        // Windows reports the deletion as DeletePending (legacy semantics)
        // or no links left (POSIX semantics, the default since Windows 10
        // 1709); Wine 8 reports neither (its ntdll leaves DeletePending
        // FALSE and unlinks only at the last close), so this is checked on
        // Unix only.
        #[cfg(unix)]
        assert_eq!(stat_file(&file).unwrap().links, 0);
        let n = read_at_most(&file, 0, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"first line\nsecond\n");
        sync_dir(dir.path()).unwrap();
    }
}
