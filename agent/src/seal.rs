//! Sealing: SHA-256 of the raw bytes and one standard zstd frame holding
//! exactly them. Each source owns a `Sealer`, so the compression context is
//! reused and sources seal in parallel on their own threads.

use custody_evidence::Sha256;

pub struct Sealed {
    pub raw_sha256: Sha256,
    pub object: Vec<u8>,
    pub object_sha256: Sha256,
}

pub struct Sealer {
    compressor: zstd::bulk::Compressor<'static>,
    level: i32,
}

impl Sealer {
    pub fn new(level: i32) -> std::io::Result<Self> {
        let mut compressor = zstd::bulk::Compressor::new(level)?;
        // Content size and checksum in the frame header: `zstd -d` and
        // `zstd -t` check the payload on their own.
        compressor.include_contentsize(true)?;
        compressor.include_checksum(true)?;
        Ok(Sealer { compressor, level })
    }

    pub fn seal(&mut self, raw: &[u8]) -> Sealed {
        let raw_sha256 = Sha256::digest(raw);
        let object = match self.compressor.compress(raw) {
            Ok(o) => o,
            // Compression of an in-memory buffer fails only on allocation
            // failure; a fresh context is the only recovery worth trying.
            Err(_) => {
                let mut c = zstd::bulk::Compressor::new(self.level).expect("zstd context");
                let _ = c.include_contentsize(true);
                let _ = c.include_checksum(true);
                let o = c
                    .compress(raw)
                    .expect("zstd compression of a memory buffer");
                self.compressor = c;
                o
            }
        };
        let object_sha256 = Sha256::digest(&object);
        Sealed {
            raw_sha256,
            object,
            object_sha256,
        }
    }
}
