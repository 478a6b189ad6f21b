//! Reading a tar as a stream of entries without trusting it: extension
//! headers are bounded (a GNU long name of at most 4 KiB, a pax header of
//! at most 64 KiB), links and special files are reported and never
//! followed or extracted, short data and a missing end-of-archive marker
//! are reported as truncation. Built on the `tar` crate's raw entries
//! (which check every header's checksum), with the extension headers
//! handled here so that their sizes are bounded.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

/// Longest GNU long name accepted (`L` entry), bytes.
pub const MAX_LONG_NAME: u64 = 4096;
/// Largest pax extended header accepted (`x`/`g` entry), bytes.
pub const MAX_PAX_HEADER: u64 = 64 << 10;

/// What a tar entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Regular,
    Directory,
    Symlink,
    HardLink,
    CharDevice,
    BlockDevice,
    Fifo,
    /// Any other type flag (the byte as written).
    Other(u8),
}

impl EntryKind {
    pub fn describe(&self) -> String {
        match self {
            EntryKind::Regular => "regular file".into(),
            EntryKind::Directory => "directory".into(),
            EntryKind::Symlink => "symbolic link".into(),
            EntryKind::HardLink => "hard link".into(),
            EntryKind::CharDevice => "character device".into(),
            EntryKind::BlockDevice => "block device".into(),
            EntryKind::Fifo => "FIFO".into(),
            EntryKind::Other(b) => format!("entry of type {:?}", *b as char),
        }
    }
}

/// One entry's header, after extension headers were applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    /// The path as written (not necessarily UTF-8, not yet checked).
    pub path: Vec<u8>,
    pub kind: EntryKind,
    /// Data bytes that follow the header.
    pub size: u64,
    /// For links: the target as written (never followed).
    pub link: Option<Vec<u8>>,
    /// Byte offset of the entry's data in the archive.
    pub data_offset: u64,
    /// Byte offset of the entry's first header block (its GNU long-name or
    /// pax header when it has one): where a rewrite of this entry starts.
    pub header_offset: u64,
    /// The header's `mtime`, Unix seconds.
    pub mtime: u64,
}

/// Why the archive could not be read to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TarProblem {
    /// The stream ended inside an entry or without the end-of-archive
    /// blocks (`after` names the last complete entry).
    Truncated { after: Option<String>, why: String },
    /// A header that does not parse (bad checksum, bad number), or an
    /// extension this reader does not apply.
    Corrupt { after: Option<String>, why: String },
}

/// Counts what the archive reader consumed and whether the stream so far
/// ends in a full 512-byte block of zeros (the end-of-archive marker).
struct Counting<R> {
    inner: R,
    pos: Rc<Cell<u64>>,
    trailing_zeros: Rc<Cell<u64>>,
    /// The last read hit the end of the stream: the archive reader stopped
    /// at EOF, not at a zero block.
    at_eof: Rc<Cell<bool>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.at_eof.set(n == 0 && !buf.is_empty());
        let chunk = &buf[..n];
        self.pos.set(self.pos.get() + n as u64);
        match chunk.iter().rposition(|b| *b != 0) {
            Some(i) => self.trailing_zeros.set((n - i - 1) as u64),
            None => self
                .trailing_zeros
                .set(self.trailing_zeros.get() + n as u64),
        }
        Ok(n)
    }
}

/// Calls `visit` for every entry in order with its header and a reader of
/// exactly its data (which `visit` may leave unread). Returns `Ok(())`
/// when the archive ended properly, `Err(problem)` where it did not; `Err`
/// from `visit` (an I/O error of the underlying file) is passed through as
/// the outer `io::Error`.
pub fn for_each_entry<R: Read>(
    reader: R,
    mut visit: impl FnMut(&EntryInfo, &mut dyn Read) -> io::Result<()>,
) -> io::Result<Result<(), TarProblem>> {
    let pos = Rc::new(Cell::new(0));
    let trailing = Rc::new(Cell::new(0));
    let at_eof = Rc::new(Cell::new(false));
    let counting = Counting {
        inner: reader,
        pos: pos.clone(),
        trailing_zeros: trailing.clone(),
        at_eof: at_eof.clone(),
    };
    let mut archive = tar::Archive::new(counting);
    let mut last: Option<String> = None;
    let truncated = |last: &Option<String>, why: String| {
        Ok(Err(TarProblem::Truncated {
            after: last.clone(),
            why,
        }))
    };
    let corrupt = |last: &Option<String>, why: String| {
        Ok(Err(TarProblem::Corrupt {
            after: last.clone(),
            why,
        }))
    };
    let entries = match archive.entries() {
        Ok(e) => e.raw(true),
        Err(e) => return corrupt(&last, e.to_string()),
    };
    let mut long_name: Option<Vec<u8>> = None;
    let mut long_link: Option<Vec<u8>> = None;
    let mut pax_path: Option<Vec<u8>> = None;
    let mut pax_link: Option<Vec<u8>> = None;
    let mut ext_start: Option<u64> = None;
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let why = e.to_string();
                return if e.kind() == io::ErrorKind::UnexpectedEof
                    || why.contains("failed to read entire block")
                    || why.contains("unexpected EOF")
                {
                    truncated(&last, why)
                } else {
                    corrupt(&last, why)
                };
            }
        };
        let header = entry.header().clone();
        let size = match header.entry_size() {
            Ok(s) => s,
            Err(e) => return corrupt(&last, format!("entry size: {e}")),
        };
        let flag = header.entry_type().as_byte();
        if matches!(flag, b'L' | b'K' | b'x' | b'g') {
            ext_start.get_or_insert(entry.raw_header_position());
        }
        match flag {
            b'L' | b'K' => {
                if size > MAX_LONG_NAME {
                    return corrupt(
                        &last,
                        format!("GNU long name of {size} bytes (at most {MAX_LONG_NAME} accepted)"),
                    );
                }
                let mut v = Vec::new();
                if (&mut entry).take(size).read_to_end(&mut v)? as u64 != size {
                    return truncated(&last, "stream ended inside a GNU long name".into());
                }
                while v.last() == Some(&0) {
                    v.pop();
                }
                if flag == b'L' {
                    long_name = Some(v);
                } else {
                    long_link = Some(v);
                }
                continue;
            }
            b'x' | b'g' => {
                if size > MAX_PAX_HEADER {
                    return corrupt(
                        &last,
                        format!("pax header of {size} bytes (at most {MAX_PAX_HEADER} accepted)"),
                    );
                }
                let mut v = Vec::new();
                if (&mut entry).take(size).read_to_end(&mut v)? as u64 != size {
                    return truncated(&last, "stream ended inside a pax header".into());
                }
                if flag == b'g' {
                    continue; // global defaults: nothing custody relies on
                }
                for ext in tar::PaxExtensions::new(&v) {
                    let ext = match ext {
                        Ok(x) => x,
                        Err(e) => return corrupt(&last, format!("pax header: {e}")),
                    };
                    match ext.key_bytes() {
                        b"path" => pax_path = Some(ext.value_bytes().to_vec()),
                        b"linkpath" => pax_link = Some(ext.value_bytes().to_vec()),
                        b"size" => {
                            return corrupt(
                                &last,
                                "pax `size` extension (files over 8 GiB written in pax format) is not supported; \
                                 custody writes GNU headers"
                                    .into(),
                            )
                        }
                        _ => {}
                    }
                }
                continue;
            }
            _ => {}
        }
        let kind = match flag {
            b'0' | 0 | b'7' => EntryKind::Regular,
            b'5' => EntryKind::Directory,
            b'2' => EntryKind::Symlink,
            b'1' => EntryKind::HardLink,
            b'3' => EntryKind::CharDevice,
            b'4' => EntryKind::BlockDevice,
            b'6' => EntryKind::Fifo,
            other => EntryKind::Other(other),
        };
        let path = pax_path
            .take()
            .or(long_name.take())
            .unwrap_or_else(|| header.path_bytes().into_owned());
        let link = match kind {
            EntryKind::Symlink | EntryKind::HardLink => Some(
                pax_link
                    .take()
                    .or(long_link.take())
                    .or_else(|| header.link_name_bytes().map(|c| c.into_owned()))
                    .unwrap_or_default(),
            ),
            _ => None,
        };
        pax_link = None;
        long_link = None;
        let info = EntryInfo {
            path,
            kind,
            size,
            link,
            data_offset: entry.raw_file_position(),
            header_offset: ext_start
                .take()
                .unwrap_or_else(|| entry.raw_header_position()),
            mtime: header.mtime().unwrap_or(0),
        };
        let data_size = if matches!(kind, EntryKind::Regular) {
            size
        } else {
            0
        };
        let mut counted = CountedTake {
            inner: (&mut entry).take(data_size),
            n: 0,
        };
        visit(&info, &mut counted)?;
        // Drain what the visitor left, to detect a short entry here.
        io::copy(&mut counted, &mut io::sink())?;
        if counted.n != data_size {
            return truncated(
                &last,
                format!(
                    "entry {:?} announces {data_size} bytes, the stream ended after {}",
                    String::from_utf8_lossy(&info.path),
                    counted.n
                ),
            );
        }
        last = Some(String::from_utf8_lossy(&info.path).into_owned());
    }
    if long_name.is_some() || pax_path.is_some() {
        return truncated(&last, "an extension header with no entry after it".into());
    }
    if at_eof.get() || pos.get() & 511 != 0 || trailing.get() < 512 {
        return truncated(
            &last,
            "no end-of-archive blocks: the file was cut short".into(),
        );
    }
    Ok(Ok(()))
}

struct CountedTake<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for CountedTake<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}
