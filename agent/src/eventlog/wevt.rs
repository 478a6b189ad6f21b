//! The Event Log through `wevtapi.dll`: an [`EventFeed`] over a pull-model
//! `EvtSubscribe` (a signal event, `EvtNext`), events rendered with
//! `EvtRender(EvtRenderEventXml)` and kept as the UTF-16LE bytes Windows
//! wrote, bookmarks with `EvtCreateBookmark` / `EvtUpdateBookmark` /
//! `EvtRender(EvtRenderBookmark)`, and `EvtExportLog` for snapshots.
//!
//! Under Wine 8 (the only Windows this project's CI has) `EvtSubscribe`
//! returns NULL and `EvtExportLog` fails with ERROR_CALL_NOT_IMPLEMENTED;
//! `EvtCreateBookmark` aborts the process (unimplemented stub). So this
//! module is compiled for Windows in CI but exercised only on Windows.

use std::ptr;
use std::time::Duration;

use windows_sys::Win32::Foundation::{
    CloseHandle, GetLastError, ERROR_ACCESS_DENIED, ERROR_EVT_CHANNEL_NOT_FOUND,
    ERROR_EVT_QUERY_RESULT_INVALID_POSITION, ERROR_EVT_QUERY_RESULT_STALE,
    ERROR_INSUFFICIENT_BUFFER, ERROR_NOT_FOUND, ERROR_NO_MORE_ITEMS, ERROR_TIMEOUT, HANDLE,
    WAIT_OBJECT_0,
};
use windows_sys::Win32::System::EventLog::{
    EvtClose, EvtCreateBookmark, EvtExportLog, EvtExportLogChannelPath, EvtNext, EvtRender,
    EvtRenderBookmark, EvtRenderEventXml, EvtSubscribe, EvtSubscribeStartAfterBookmark,
    EvtSubscribeStartAtOldestRecord, EvtSubscribeStrict, EvtSubscribeToFutureEvents,
    EvtUpdateBookmark, EVT_HANDLE,
};
use windows_sys::Win32::System::Threading::{CreateEventW, ResetEvent, WaitForSingleObject};

use super::feed::{record_id_from_xml, EventFeed, FeedError, RawEvent, StartFrom};

/// A NUL-terminated UTF-16 copy of `s`.
fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

fn last_error() -> u32 {
    // SAFETY: reads the calling thread's last-error value.
    unsafe { GetLastError() }
}

/// Sorts a Windows error from `EvtSubscribe` (`subscribing`) or `EvtNext`.
fn classify(code: u32, subscribing_after_bookmark: bool, what: &str) -> FeedError {
    let text = format!("{what}: Windows error {code}");
    match code {
        ERROR_EVT_CHANNEL_NOT_FOUND => FeedError::ChannelMissing(text),
        ERROR_ACCESS_DENIED => FeedError::AccessDenied(text),
        ERROR_NOT_FOUND
        | ERROR_EVT_QUERY_RESULT_STALE
        | ERROR_EVT_QUERY_RESULT_INVALID_POSITION
            if subscribing_after_bookmark =>
        {
            FeedError::BookmarkLost(text)
        }
        _ => FeedError::Stale(text),
    }
}

/// An open `EVT_HANDLE`, closed on drop.
struct Evt(EVT_HANDLE);

impl Drop for Evt {
    fn drop(&mut self) {
        if self.0 != 0 {
            // SAFETY: a handle wevtapi returned and nobody else closes.
            unsafe { EvtClose(self.0) };
        }
    }
}

/// Renders `handle` with `flags`; returns the bytes `EvtRender` wrote,
/// without the terminating NUL (two zero bytes).
fn render(handle: EVT_HANDLE, flags: u32) -> Result<Vec<u8>, u32> {
    let mut used = 0u32;
    let mut count = 0u32;
    // SAFETY: a size query: no buffer, `used` receives the size needed.
    let ok = unsafe { EvtRender(0, handle, flags, 0, ptr::null_mut(), &mut used, &mut count) };
    if ok == 0 {
        let e = last_error();
        if e != ERROR_INSUFFICIENT_BUFFER {
            return Err(e);
        }
    }
    let mut buf = vec![0u8; used as usize];
    // SAFETY: `buf` holds `used` bytes, as EvtRender asked for.
    let ok = unsafe {
        EvtRender(
            0,
            handle,
            flags,
            used,
            buf.as_mut_ptr().cast(),
            &mut used,
            &mut count,
        )
    };
    if ok == 0 {
        return Err(last_error());
    }
    buf.truncate(used as usize);
    if buf.ends_with(&[0, 0]) {
        buf.truncate(buf.len() - 2);
    }
    Ok(buf)
}

/// A subscription to one channel.
pub struct WevtFeed {
    channel: String,
    signal: HANDLE,
    sub: Option<Evt>,
    /// The events the last `next` returned, open until the next call.
    batch: Vec<(u64, Evt)>,
    /// Updated to an event of the batch by `bookmark_at`.
    bookmark: Option<Evt>,
}

// SAFETY: the handles are used from one thread at a time (the source's).
unsafe impl Send for WevtFeed {}

impl WevtFeed {
    /// A feed for `channel`; nothing is opened until `subscribe`.
    pub fn new(channel: &str) -> std::io::Result<Self> {
        // SAFETY: a manual-reset, unnamed event.
        let signal = unsafe { CreateEventW(ptr::null(), 1, 1, ptr::null()) };
        if signal.is_null() {
            return Err(std::io::Error::last_os_error());
        }
        Ok(WevtFeed {
            channel: channel.to_string(),
            signal,
            sub: None,
            batch: Vec::new(),
            bookmark: None,
        })
    }
}

impl Drop for WevtFeed {
    fn drop(&mut self) {
        self.batch.clear();
        self.sub = None;
        self.bookmark = None;
        // SAFETY: the event this feed created.
        unsafe { CloseHandle(self.signal) };
    }
}

impl EventFeed for WevtFeed {
    fn subscribe(&mut self, from: &StartFrom) -> Result<(), FeedError> {
        self.batch.clear();
        self.sub = None;
        let channel = wide(&self.channel);
        let query = wide("*");
        let (flags, start_bm) = match from {
            StartFrom::Oldest => (EvtSubscribeStartAtOldestRecord, None),
            StartFrom::Future => (EvtSubscribeToFutureEvents, None),
            StartFrom::AfterBookmark(xml) => {
                let x = wide(xml);
                // SAFETY: a NUL-terminated bookmark XML.
                let h = unsafe { EvtCreateBookmark(x.as_ptr()) };
                if h == 0 {
                    return Err(FeedError::BookmarkLost(format!(
                        "EvtCreateBookmark from the checkpoint's bookmark: Windows error {}",
                        last_error()
                    )));
                }
                (
                    EvtSubscribeStartAfterBookmark | EvtSubscribeStrict,
                    Some(Evt(h)),
                )
            }
        };
        // SAFETY: NUL-terminated strings that outlive the call; no callback
        // (pull model: the signal event is set when events arrive).
        let h = unsafe {
            EvtSubscribe(
                0,
                self.signal,
                channel.as_ptr(),
                query.as_ptr(),
                start_bm.as_ref().map_or(0, |b| b.0),
                ptr::null(),
                None,
                flags,
            )
        };
        if h == 0 {
            let code = last_error();
            return Err(classify(
                code,
                start_bm.is_some(),
                &format!("EvtSubscribe({})", self.channel),
            ));
        }
        self.sub = Some(Evt(h));
        // SAFETY: NULL creates an empty bookmark.
        let bm = unsafe { EvtCreateBookmark(ptr::null()) };
        if bm == 0 {
            return Err(FeedError::Stale(format!(
                "EvtCreateBookmark: Windows error {}",
                last_error()
            )));
        }
        self.bookmark = Some(Evt(bm));
        Ok(())
    }

    fn next(&mut self, max: usize, wait: Duration) -> Result<Vec<RawEvent>, FeedError> {
        self.batch.clear();
        let Some(sub) = &self.sub else {
            return Err(FeedError::Stale("EvtNext without a subscription".into()));
        };
        let max = max.clamp(1, 1024);
        let mut handles: Vec<isize> = vec![0; max];
        let mut returned = 0u32;
        for attempt in 0..2 {
            // SAFETY: `handles` has room for `max` handles.
            let ok =
                unsafe { EvtNext(sub.0, max as u32, handles.as_mut_ptr(), 0, 0, &mut returned) };
            if ok != 0 {
                break;
            }
            let code = last_error();
            if code != ERROR_NO_MORE_ITEMS && code != ERROR_TIMEOUT {
                return Err(classify(code, false, &format!("EvtNext({})", self.channel)));
            }
            returned = 0;
            if attempt == 1 {
                return Ok(Vec::new());
            }
            // Nothing yet: sleep on the signal, then try once more.
            // SAFETY: the event this feed owns.
            unsafe { ResetEvent(self.signal) };
            let ms = wait.as_millis().min(u128::from(u32::MAX - 1)) as u32;
            // SAFETY: as above.
            if unsafe { WaitForSingleObject(self.signal, ms) } != WAIT_OBJECT_0 {
                return Ok(Vec::new());
            }
        }
        let mut out = Vec::with_capacity(returned as usize);
        for &h in &handles[..returned as usize] {
            let h = Evt(h);
            let xml = render(h.0, EvtRenderEventXml).map_err(|code| {
                FeedError::Stale(format!("EvtRender({}): Windows error {code}", self.channel))
            })?;
            let id = record_id_from_xml(&xml).ok_or_else(|| {
                FeedError::Stale(format!("{}: an event without EventRecordID", self.channel))
            })?;
            out.push(RawEvent { record_id: id, xml });
            self.batch.push((id, h));
        }
        Ok(out)
    }

    fn bookmark_at(&mut self, record_id: u64) -> Result<String, FeedError> {
        let (Some(bm), Some((_, ev))) = (
            &self.bookmark,
            self.batch.iter().find(|(id, _)| *id == record_id),
        ) else {
            return Err(FeedError::Stale(format!(
                "{}: bookmark asked for record {record_id}, not in the last batch",
                self.channel
            )));
        };
        // SAFETY: both handles are open.
        if unsafe { EvtUpdateBookmark(bm.0, ev.0) } == 0 {
            return Err(FeedError::Stale(format!(
                "EvtUpdateBookmark: Windows error {}",
                last_error()
            )));
        }
        let bytes = render(bm.0, EvtRenderBookmark).map_err(|code| {
            FeedError::Stale(format!("EvtRender(bookmark): Windows error {code}"))
        })?;
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect();
        // Agent state, not evidence: kept as text in the checkpoint.
        Ok(String::from_utf16_lossy(&units))
    }
}

/// Exports every event of `channel` to `target` (a new .evtx file), as
/// `wevtutil epl CHANNEL TARGET` does; the snapshot keeps the file byte for
/// byte (FORMAT.md §17.5). `Err` carries the Windows error.
pub fn export_channel(channel: &str, target: &std::path::Path) -> Result<(), String> {
    let c = wide(channel);
    let q = wide("*");
    let t = wide(&target.to_string_lossy());
    // SAFETY: NUL-terminated strings that outlive the call.
    let ok = unsafe {
        EvtExportLog(
            0,
            c.as_ptr(),
            q.as_ptr(),
            t.as_ptr(),
            EvtExportLogChannelPath,
        )
    };
    if ok == 0 {
        return Err(format!(
            "EvtExportLog({channel} → {}): Windows error {}",
            target.display(),
            last_error()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wine installs its own `winecfg.exe`; Windows has none.
    fn under_wine() -> bool {
        std::path::Path::new(r"C:\windows\system32\winecfg.exe").exists()
    }

    /// On Windows: subscribe, read, bookmark, export and a missing channel.
    /// Under Wine 8 (CI): what its wevtapi stubs return, so that a Wine
    /// that starts implementing them makes this test say so.
    #[test]
    fn subscribe_read_bookmark_export() {
        let dir = std::env::temp_dir().join(format!("custody-wevt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("System.evtx");
        let mut feed = WevtFeed::new("System").unwrap();
        let sub = feed.subscribe(&StartFrom::Oldest);
        let export = export_channel("System", &out);
        if under_wine() {
            // EvtSubscribe is a stub that returns NULL; EvtExportLog fails
            // with ERROR_CALL_NOT_IMPLEMENTED (120). (EvtCreateBookmark
            // would abort the process, so it is not reached.)
            assert!(matches!(sub, Err(FeedError::Stale(_))), "{sub:?}");
            let e = export.unwrap_err();
            assert!(e.contains("Windows error 120"), "{e}");
            return;
        }
        sub.expect("EvtSubscribe(System)");
        let events = feed.next(8, Duration::from_secs(5)).expect("EvtNext");
        assert!(!events.is_empty(), "the System log has events");
        let last = events.last().unwrap().record_id;
        let bm = feed.bookmark_at(last).expect("bookmark");
        assert!(bm.contains(&format!("RecordId='{last}'")), "{bm}");
        // Resubscribing after the bookmark continues after `last`.
        feed.subscribe(&StartFrom::AfterBookmark(bm))
            .expect("after bookmark");
        if let Some(e) = feed.next(1, Duration::from_secs(1)).unwrap().first() {
            assert!(e.record_id > last);
        }
        export.expect("EvtExportLog(System)");
        let bytes = std::fs::read(&out).unwrap();
        assert!(bytes.starts_with(b"ElfFile\0"));
        let mut missing = WevtFeed::new("Custody-No-Such-Channel/Operational").unwrap();
        let r = missing.subscribe(&StartFrom::Oldest);
        assert!(matches!(r, Err(FeedError::ChannelMissing(_))), "{r:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
