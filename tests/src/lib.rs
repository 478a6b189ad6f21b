//! Support for the end-to-end tests: the real `custody-agent` and
//! `custody-verify` binaries against real files, stores and tools.
//!
//! The main pieces, one module each:
//! - [`bins`]: builds the binaries once per test process and locates them.
//! - [`env`]: [`TestEnv`], a temp workspace (logs, store, state) with its
//!   own host id, kept on failure when `CUSTODY_TEST_KEEP=1`.
//! - [`agent`]: [`AgentOptions`] (the command line) and [`AgentProcess`], a
//!   guard that starts the agent and kills it (`kill -9`) when dropped, with
//!   [`AgentProcess::kill9`] and [`AgentProcess::sigterm`] for the tests.
//! - [`collector`]: [`CollectorSetup`] (CA, enrollments, ports) and
//!   [`CollectorProcess`] for the real `custody-collector`, and [`Curl`], a
//!   stock HTTPS client for the refusal tests.
//! - [`moto`]: a moto S3 server per test and the boto3 checker script.
//! - [`python`]: the interpreter of the test tools' virtual environment.
//! - [`browser`]: a page in headless Chromium, as a person would see it,
//!   and the check that nothing from a log ran.
//! - [`journal`]: real journal files written by `systemd-journal-remote`.
//! - [`evidence_ref`]: a report's evidence reference re-derived with
//!   `zstd -dc`, `tail -c`, `head -c` and `sha256sum`.
//! - [`wait`]: [`wait_for`], polling an observable condition until a
//!   deadline, failing with what was expected and what was last seen.
//! - [`store`]: [`StoreContents`], reading a store the way an auditor would:
//!   every payload through the real `zstd -d -c`, hashes against the
//!   records, chains in seq order, and bytes reassembled per source file by
//!   byte range with gaps and overlaps reported.
//! - [`lines`]: realistic lines from `shared/testdata/linux` tagged with
//!   unique ids ([`LineWriter`]), and [`assert_exactly_once`] for the line
//!   accounting (zero lost, zero duplicated).
//! - [`verify`]: runs `custody-verify store`.
//! - [`status`]: reads the agent's `status.json`.
//! - [`rng`]: a small seeded RNG and the `CUSTODY_TEST_SEED` /
//!   `CUSTODY_TEST_CYCLES` knobs.
//! - [`rotate`]: [`RotatingLog`], a log rotated in every logrotate style
//!   (rename-and-create, copytruncate, delaycompress, delete-and-recreate)
//!   with a model of which ids are in which file.
//! - [`campaign`]: the fault campaign's pieces: a small loop-mounted ext4
//!   (freed inodes reused at once), the workspace opened to `nobody`, and
//!   the per-stream line accounting (each line once, in its own stream,
//!   byte-exact).
//!
//! ```no_run
//! use custody_tests::*;
//! let env = TestEnv::new("example");
//! let mut writer = LineWriter::new(env.logs.join("app.log"), "ex");
//! writer.append(&testdata_lines(), 100);
//! let opts = AgentOptions::new(&env).source("app", &format!("{}/app.log", env.logs.display()));
//! let mut agent = AgentProcess::start(&opts);
//! wait_for_lines(&env, writer.ids().len(), std::time::Duration::from_secs(60));
//! assert_eq!(agent.sigterm(std::time::Duration::from_secs(30)).code(), Some(0));
//! let store = StoreContents::read(&env.store, &env.host_id).expect("store readable");
//! store.assert_clean();
//! assert_exactly_once(writer.ids(), &store.line_ids());
//! ```
#![deny(unsafe_code)]

pub mod agent;
pub mod bins;
pub mod browser;
pub mod bundle;
pub mod campaign;
pub mod collector;
pub mod env;
pub mod evidence_ref;
pub mod journal;
pub mod lines;
pub mod moto;
pub mod python;
pub mod rng;
pub mod rotate;
mod signal;
pub mod status;
pub mod store;
pub mod verify;
pub mod wait;

pub use agent::{agent_output, AgentOptions, AgentProcess};
pub use bins::{bins, Bins};
pub use collector::{CollectorProcess, CollectorSetup, Curl, CurlReply, IdleTls};
pub use env::TestEnv;
pub use evidence_ref::{rederive_evidence, sh};
pub use journal::{push_binary_field, write_journal};
pub use lines::{
    assert_exactly_once, extract_ids, parse_id, render_line, testdata_lines, LineWriter, ID_MARKER,
};
pub use rng::{cycles_from_env, TestRng};
pub use rotate::{parse_rotated, Gen, RotatingLog};
pub use status::read_status;
pub use store::{FileKey, ReassembledFile, StoreContents, StoredSegment};
pub use verify::{allowed_signers, run_verify, VerifyOutcome};
pub use wait::{wait_for, wait_for_ids, wait_for_lines};
