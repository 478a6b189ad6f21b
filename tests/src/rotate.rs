//! Log files rotated the way logrotate (and applications) do it, with a
//! model of which line ids are in which file, so a test knows what must
//! arrive and never deletes a line the agent could not have read.
//!
//! [`RotatingLog`] keeps one [`Gen`] per physical file: the live file is
//! the last one, rotated generations are named `base.N` or `base.N.gz`.
//! The styles are rename-and-create ([`RotatingLog::rotate_create`]),
//! copytruncate ([`RotatingLog::rotate_copytruncate`]), delaycompress
//! ([`RotatingLog::compress_second`]) and delete-and-recreate
//! ([`RotatingLog::recreate`]). Used by the rotation matrix
//! (`tests/rotation.rs`) and the fault campaign (`tests/fault_campaign.rs`).

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::lines::{testdata_lines, LineWriter};

/// One physical generation of the log: the ids written into it, and the
/// name it has now.
#[derive(Debug)]
pub struct Gen {
    pub writer: LineWriter,
    pub name: String,
    pub compressed: bool,
}

/// A log file rotated the way logrotate does, with a model of which ids
/// are in which file. The last generation is the live file.
#[derive(Debug)]
pub struct RotatingLog {
    pub dir: PathBuf,
    pub base: String,
    pub gens: Vec<Gen>,
    pub next_gen: u32,
    /// Prefix of every generation's tag (`<prefix>g<N>`), so that a line's
    /// id names the log it was written to.
    pub prefix: String,
    /// Ids of generations deleted after they were confirmed stored.
    pub retired: Vec<String>,
    /// Untagged first lines every new file begins with (for the
    /// identical-first-bytes case), or empty.
    pub header: Vec<u8>,
}

impl RotatingLog {
    /// A log `dir/base` whose generations are tagged `g0`, `g1`, …; the live
    /// file is not created yet (see [`RotatingLog::create_live`]).
    pub fn new(dir: &Path, base: &str) -> Self {
        Self::with_prefix(dir, base, "")
    }

    /// As [`RotatingLog::new`], with tags `<prefix>g0`, `<prefix>g1`, …
    /// (`prefix` in letters and digits).
    pub fn with_prefix(dir: &Path, base: &str, prefix: &str) -> Self {
        let mut log = Self {
            dir: dir.to_path_buf(),
            base: base.to_string(),
            gens: Vec::new(),
            next_gen: 0,
            prefix: prefix.to_string(),
            retired: Vec::new(),
            header: Vec::new(),
        };
        log.push_live();
        log
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn live_path(&self) -> PathBuf {
        self.path(&self.base)
    }

    /// Starts a new live generation in the model (the file is the caller's).
    pub fn push_live(&mut self) {
        let tag = format!("{}g{}", self.prefix, self.next_gen);
        self.next_gen += 1;
        self.gens.push(Gen {
            writer: LineWriter::new(self.live_path(), &tag),
            name: self.base.clone(),
            compressed: false,
        });
    }

    pub fn live(&mut self) -> &mut Gen {
        self.gens
            .last_mut()
            .expect("there is always a live generation")
    }

    /// Appends `n` tagged lines to the live file.
    pub fn append(&mut self, n: usize) {
        self.live().writer.append(testdata_lines(), n);
    }

    /// Every id written, in every generation (including deleted ones).
    pub fn all_ids(&self) -> Vec<String> {
        let mut ids = self.retired.clone();
        for g in &self.gens {
            ids.extend(g.writer.ids().iter().cloned());
        }
        ids
    }

    /// Renames `base.N[.gz]` to `base.N+1[.gz]`, oldest first, like
    /// logrotate does before it rotates the live file.
    pub fn shift(&mut self) {
        let base = self.base.clone();
        let n = self.gens.len() - 1;
        // Oldest (highest number) first, so no rename lands on a name
        // that is still taken.
        for i in 0..n {
            let g = &self.gens[i];
            let (num, gz) = parse_rotated(&base, &g.name).expect("rotated names are base.N[.gz]");
            let new = if gz {
                format!("{base}.{}.gz", num + 1)
            } else {
                format!("{base}.{}", num + 1)
            };
            fs::rename(self.path(&g.name), self.path(&new)).expect("shift rotated file");
            self.gens[i].name = new;
        }
    }

    /// Rename-and-create: `base` → `base.1`, and a new empty `base`
    /// (logrotate's `create`).
    pub fn rotate_create(&mut self) {
        self.shift();
        let live = self.live_path();
        let rotated = format!("{}.1", self.base);
        fs::rename(&live, self.path(&rotated)).expect("rename live file");
        self.live().name = rotated;
        self.push_live();
        self.create_live();
    }

    /// Creates the live file (empty, or with the header), mode 0644 so an
    /// agent running as `nobody` may read it whatever the umask.
    pub fn create_live(&mut self) {
        let live = self.live_path();
        fs::write(&live, &self.header).expect("create live file");
        fs::set_permissions(&live, fs::Permissions::from_mode(0o644))
            .unwrap_or_else(|e| panic!("chmod 644 {}: {e}", live.display()));
    }

    /// copytruncate: copy `base` to `base.1` (a new inode with the same
    /// bytes), then truncate `base`. The writer is paused in between (this
    /// thread is the writer), since logrotate's own window would otherwise
    /// lose lines.
    pub fn rotate_copytruncate(&mut self) {
        self.shift();
        let live = self.live_path();
        let rotated = format!("{}.1", self.base);
        fs::copy(&live, self.path(&rotated)).expect("copy live file");
        OpenOptions::new()
            .write(true)
            .open(&live)
            .and_then(|f| f.set_len(0))
            .expect("truncate live file");
        // The copy now holds the old generation's ids; the live file (same
        // inode) starts a new generation.
        self.live().name = rotated;
        self.push_live();
    }

    /// Delete-and-recreate (an application that removes its log and starts
    /// a new one): the live file is deleted and created anew, usually on the
    /// freed inode. Only when `stored` confirms the live file's ids are in
    /// the store (nobody can read a deleted file's lines afterwards);
    /// returns whether it happened.
    pub fn recreate(&mut self, stored: impl Fn(&[String]) -> bool) -> bool {
        if !stored(self.gens.last().expect("live generation").writer.ids()) {
            return false;
        }
        let live = self.live_path();
        fs::remove_file(&live).unwrap_or_else(|e| panic!("delete {}: {e}", live.display()));
        let g = self.gens.pop().expect("live generation");
        self.retired.extend(g.writer.ids().iter().cloned());
        self.push_live();
        self.create_live();
        true
    }

    /// delaycompress: after shifting, the previous `.1` (now `.2`) is
    /// compressed to `.2.gz`; the caller has confirmed its ids are stored.
    pub fn compress_second(&mut self) -> bool {
        self.compress_second_if(|_| true)
    }

    /// [`RotatingLog::compress_second`], only if `stored` confirms the
    /// ids of `.2` are in the store (the compressed file is never read).
    pub fn compress_second_if(&mut self, stored: impl Fn(&[String]) -> bool) -> bool {
        let name2 = format!("{}.2", self.base);
        let Some(i) = self
            .gens
            .iter()
            .position(|g| g.name == name2 && !g.compressed)
        else {
            return false;
        };
        if !stored(self.gens[i].writer.ids()) {
            return false;
        }
        let gz = format!("{name2}.gz");
        let out = File::create(self.path(&gz)).expect("create .gz");
        let status = Command::new("gzip")
            .arg("-c")
            .arg(self.path(&name2))
            .stdout(out)
            .status()
            .expect("run gzip");
        assert!(status.success(), "gzip -c {name2} failed: {status}");
        fs::remove_file(self.path(&name2)).expect("remove compressed original");
        self.gens[i].name = gz;
        self.gens[i].compressed = true;
        true
    }

    /// Deletes the oldest rotated generation beyond `keep` — only once its
    /// ids are confirmed in the store (a dead agent cannot read a deleted
    /// file), else leaves it for a later round.
    pub fn drop_oldest(&mut self, keep: usize, stored: impl Fn(&[String]) -> bool) {
        while self.gens.len() - 1 > keep {
            let oldest = &self.gens[0];
            if !oldest.compressed && !stored(oldest.writer.ids()) {
                return;
            }
            fs::remove_file(self.path(&oldest.name)).expect("remove oldest rotated file");
            let g = self.gens.remove(0);
            self.retired.extend(g.writer.ids().iter().cloned());
        }
    }

    /// The ids of the generation currently named `name`.
    pub fn ids_of(&self, name: &str) -> Vec<String> {
        self.gens
            .iter()
            .filter(|g| g.name == name)
            .flat_map(|g| g.writer.ids().iter().cloned())
            .collect()
    }
}

/// `base.N` → (N, false), `base.N.gz` → (N, true).
pub fn parse_rotated(base: &str, name: &str) -> Option<(u32, bool)> {
    let rest = name.strip_prefix(base)?.strip_prefix('.')?;
    match rest.strip_suffix(".gz") {
        Some(n) => Some((n.parse().ok()?, true)),
        None => Some((rest.parse().ok()?, false)),
    }
}
