//! The custody collector: the physically separate system agents ship their
//! evidence to, and that devices which cannot run an agent (firewalls, IPS)
//! send syslog to (REQUIREMENTS.md §1). Agents authenticate with client
//! certificates from the collector's own CA ([`pki`]); each host can write
//! only its own namespace `v1/<host>/`, never delete or overwrite. Every
//! upload is checked on receipt ([`receipt`]) and acknowledged only once it
//! is durable in the backing store (filesystem or S3). Findings (gaps,
//! forks, bad signatures) go to `findings.jsonl`, the log and `/metrics`,
//! and the data is still kept.
//!
//! Main pieces, one job each:
//! - [`config`]: TOML and flags → checked [`config::Config`].
//! - [`pki`]: `ca init` and `enroll`; the host id in a client certificate.
//! - [`operators`]: `operator add/list/revoke`; the operator named by an
//!   operator client certificate.
//! - [`revocation`]: `revoke`, and the revocation list the server checks.
//! - [`tls`]: the rustls server configuration.
//! - [`ingest`]: the HTTPS listener ([`ingest::serve`] takes its listener
//!   and a shutdown signal), one module per request kind.
//! - [`receipt`]: verification on receipt; [`findings`]: the findings log.
//! - [`incident`]: remote snapshots, legal holds on what they hold, and
//!   the collector's own custody events (FORMAT.md §15).
//! - [`ops`]: `/healthz` and `/metrics`; [`metrics`]: the counters.
//! - [`prune`]: the scheduled prune of the filesystem store.
//! - [`syslog`]: RFC 5424/3164 over UDP, TCP and TLS; each device its own
//!   stream of the same hash-chained, signed segments the agent writes.
//! - [`server`]: opens the store and runs all of the above until a signal.
//!
//! The protocol is FORMAT.md, "Collector ingest protocol".
//!
//! ```
//! use custody_collector::pki;
//! use custody_evidence::HostId;
//!
//! let dir = tempfile::tempdir()?;
//! // `custody-collector ca init` and `enroll`:
//! pki::ca_init(&dir.path().join("ca"), &["collector.example.org".to_string()])?;
//! let web01 = HostId::new("web01")?;
//! pki::enroll(&dir.path().join("ca"), &web01, &dir.path().join("enroll"))?;
//! // What the collector reads out of the client certificate:
//! let pem = std::fs::read_to_string(dir.path().join("enroll/client.pem"))?;
//! let der = pem_to_der(&pem);
//! assert_eq!(pki::host_of_certificate(&der)?, web01);
//! # fn pem_to_der(pem: &str) -> Vec<u8> {
//! #     use rustls_pki_types::{pem::PemObject, CertificateDer};
//! #     CertificateDer::from_pem_slice(pem.as_bytes()).unwrap().to_vec()
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod config;
pub mod console;
pub mod findings;
pub mod incident;
pub mod ingest;
pub mod metrics;
pub mod operators;
pub mod ops;
pub mod pki;
pub mod prune;
pub mod receipt;
pub mod revocation;
pub mod server;
pub mod syslog;
pub mod tls;
