//! The S3 store: every object under `s3://BUCKET/PREFIX/<key>`, written
//! create-only with Object Lock COMPLIANCE and the retain-until time the
//! retention policy gives it, so that nobody, the bucket owner included,
//! can delete or shorten it before then (REQUIREMENTS.md §1: a physically
//! separate system an intruder on the host cannot erase).
//!
//! How the [`ObjectStore`] promises are kept here:
//! - **Create-only.** A put first asks whether the name exists (HEAD); if it
//!   does, the stored bytes are fetched and compared: identical bytes are
//!   [`PutOutcome::AlreadyPresent`], different bytes are
//!   [`StoreError::Conflict`] and nothing is written. The write itself
//!   carries `If-None-Match: *`, so a writer racing between the HEAD and the
//!   PUT gets HTTP 412 instead of a new version; a server that answers
//!   HTTP 501 to that header is remembered and written to without
//!   it (HEAD + compare only). Even then versioning and Object Lock keep the
//!   first version: an overwrite could hide it, never destroy it.
//! - **Durable on return.** `put` returns once the server acknowledged the
//!   write (S3 acknowledges only stored objects).
//! - **Integrity on the wire.** Every upload sends `x-amz-checksum-sha256`
//!   computed by us over the bytes as given, and the server rejects a body
//!   that does not match. The SDK's own automatic CRC32 checksums are turned
//!   off (`WhenRequired`): some S3-compatible servers reject or mangle them.
//! - **Retention.** `ObjectLockMode=COMPLIANCE` and
//!   `ObjectLockRetainUntilDate` = `retain_until` rounded *up* to the whole
//!   second (servers keep whole seconds or milliseconds; rounding up never
//!   shortens retention). The same time is also written as the user metadata
//!   `x-amz-meta-custody-retain-until`, so a bucket without Object Lock
//!   (allowed, with a warning, at levels D and E) still records it.
//! - **Pruning** is the bucket's job, not ours: a lifecycle rule removes
//!   versions whose retention has passed (docs/s3.md). [`S3Store::prune`]
//!   deletes nothing. Deleting from the agent would need `s3:DeleteObject*`
//!   permissions that an agent on a possibly compromised host should not
//!   hold.
//!
//! Large objects (above [`S3Settings::multipart_threshold`]) go up as a
//! multipart upload of [`PART_SIZE`] parts, each with its own SHA-256, with
//! the part checksums repeated in CompleteMultipartUpload; a failed upload is
//! aborted so no orphaned parts are billed.
//!
//! Errors: network failures, timeouts, 5xx, throttling, missing credentials,
//! denied access and a missing bucket are [`StoreError::Unavailable`]
//! (transient: the agent keeps the data in its spool and retries, and an
//! operator can fix the permission or create the bucket meanwhile); the
//! message names the bucket, the operation and, for a denial, the permission
//! that is missing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{
    BucketVersioningStatus, ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart,
    ObjectLockEnabled, ObjectLockLegalHold, ObjectLockLegalHoldStatus, ObjectLockMode,
    ObjectLockRetention, ObjectLockRetentionMode,
};
use aws_sdk_s3::Client;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::{
    check_key, format_utc, parse_utc, ObjectInfo, ObjectStore, PruneReport, PutOptions, PutOutcome,
    StoreError,
};

/// Objects larger than this go up as multipart uploads by default: large
/// enough that log segments (4 MiB by default) never do, small enough that a
/// retry after a network hiccup resends one part, not the whole object.
pub const DEFAULT_MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;
/// Size of every multipart part but the last. S3 requires at least 5 MiB.
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// User metadata key (sent as `x-amz-meta-custody-retain-until`) holding the
/// retain-until time in the store's one text form.
pub const RETAIN_UNTIL_METADATA: &str = "custody-retain-until";
/// Region used when none is configured and none is found in the AWS
/// configuration chain; S3-compatible servers usually ignore it.
pub const FALLBACK_REGION: &str = "us-east-1";

/// Where and how to reach the bucket. Built by the agent from
/// `store = "s3://BUCKET/PREFIX"` and the `s3_*` keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub bucket: String,
    /// Prepended to every key as `PREFIX/key`; empty for the bucket root.
    /// Never starts or ends with `/`.
    pub prefix: String,
    /// A custom endpoint URL for S3-compatible servers (MinIO, Ceph RGW);
    /// `None` for AWS itself.
    pub endpoint: Option<String>,
    /// `None`: from the AWS configuration chain (`AWS_REGION`, profile),
    /// else [`FALLBACK_REGION`].
    pub region: Option<String>,
    /// `http://host/bucket/key` instead of `http://bucket.host/key`; most
    /// self-hosted servers need it.
    pub path_style: bool,
    /// Objects larger than this many bytes are uploaded in parts.
    pub multipart_threshold: u64,
    /// Refuse a bucket without versioning and Object Lock (levels A, B, C).
    /// [`S3Store::connect`] takes the same choice as an argument; the agent
    /// keeps it here so its store target carries the whole decision.
    pub require_object_lock: bool,
}

impl S3Settings {
    /// Settings for `bucket` and `prefix` with the defaults: AWS, region
    /// from the environment, virtual-hosted addressing, the default
    /// multipart threshold, Object Lock required.
    pub fn new(bucket: impl Into<String>, prefix: impl Into<String>) -> S3Settings {
        S3Settings {
            bucket: bucket.into(),
            prefix: prefix.into(),
            endpoint: None,
            region: None,
            path_style: false,
            multipart_threshold: DEFAULT_MULTIPART_THRESHOLD,
            require_object_lock: true,
        }
    }

    /// Splits `s3://BUCKET[/PREFIX]` into a checked bucket name and prefix
    /// (trailing `/` dropped). The message says what is wrong and what
    /// would be valid.
    pub fn parse_url(url: &str) -> Result<(String, String), String> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("{url:?} does not start with s3://"))?;
        let (bucket, prefix) = match rest.split_once('/') {
            Some((b, p)) => (b, p.trim_end_matches('/')),
            None => (rest, ""),
        };
        check_bucket_name(bucket).map_err(|why| {
            format!("{url:?}: bucket name {bucket:?} {why} (S3 bucket naming rules)")
        })?;
        if !prefix.is_empty() {
            check_key(prefix).map_err(|_| {
                format!(
                    "{url:?}: prefix {prefix:?} must be '/'-separated parts of letters, digits, '.', '_' and '-', \
                     none empty or starting with '.'"
                )
            })?;
        }
        Ok((bucket.to_string(), prefix.to_string()))
    }
}

/// Checks an S3 general-purpose bucket name: 3 to 63 characters of lower
/// case letters, digits, `.` and `-`, starting and ending with a letter or
/// digit, no `..`, not shaped like an IP address, none of the reserved
/// prefixes and suffixes. Returns why not.
pub fn check_bucket_name(name: &str) -> Result<(), &'static str> {
    if name.len() < 3 || name.len() > 63 {
        return Err("must be 3 to 63 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Err("may contain only lower-case letters, digits, '.' and '-'");
    }
    let edge_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !edge_ok(name.as_bytes()[0]) || !edge_ok(name.as_bytes()[name.len() - 1]) {
        return Err("must begin and end with a letter or digit");
    }
    if name.contains("..") {
        return Err("must not contain two adjacent periods");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err("must not be formatted as an IP address");
    }
    if ["xn--", "sthree-", "amzn-s3-demo-"]
        .iter()
        .any(|p| name.starts_with(p))
    {
        return Err("must not start with xn--, sthree- or amzn-s3-demo- (reserved)");
    }
    if ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"]
        .iter()
        .any(|s| name.ends_with(s))
    {
        return Err("must not end with -s3alias, --ol-s3, .mrap, --x-s3 or --table-s3 (reserved)");
    }
    Ok(())
}

/// What the start-up check found about the bucket's protection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketProtection {
    /// `Enabled`, `Suspended`, or `None` if versioning was never enabled.
    pub versioning: Option<String>,
    /// Whether the bucket has Object Lock enabled.
    pub object_lock: bool,
}

impl BucketProtection {
    /// Both versioning and Object Lock are on: retention can be enforced.
    pub fn is_protected(&self) -> bool {
        self.object_lock && self.versioning.as_deref() == Some("Enabled")
    }

    /// What is missing and the commands that fix it, or `None` when the
    /// bucket is protected.
    pub fn problem(&self, settings: &S3Settings) -> Option<String> {
        if self.is_protected() {
            return None;
        }
        let bucket = &settings.bucket;
        let endpoint = settings
            .endpoint
            .as_deref()
            .map(|e| format!(" --endpoint-url {e}"))
            .unwrap_or_default();
        let versioning = self.versioning.as_deref().unwrap_or("never enabled");
        let lock = if self.object_lock {
            "enabled"
        } else {
            "not enabled"
        };
        Some(format!(
            "bucket {bucket} cannot enforce retention (versioning: {versioning}; Object Lock: {lock}). \
             Fix: create a bucket with Object Lock (which also enables versioning): \
             `aws{endpoint} s3api create-bucket --bucket {bucket} --object-lock-enabled-for-bucket`, \
             or enable both on the existing bucket: \
             `aws{endpoint} s3api put-bucket-versioning --bucket {bucket} --versioning-configuration Status=Enabled` then \
             `aws{endpoint} s3api put-object-lock-configuration --bucket {bucket} --object-lock-configuration ObjectLockEnabled=Enabled` \
             (see docs/s3.md)"
        ))
    }
}

/// The S3 store. Cheap to share behind an `Arc`; the SDK client pools
/// connections.
#[derive(Debug)]
pub struct S3Store {
    client: Client,
    settings: S3Settings,
    protection: BucketProtection,
    /// Whether to send `If-None-Match: *`; cleared when the server says it
    /// does not implement it.
    conditional_writes: AtomicBool,
}

/// How a write ended when it did not succeed.
enum WriteFailure {
    /// The server refused because the name exists (HTTP 412).
    NameTaken,
    /// The server does not implement `If-None-Match` (HTTP 501).
    ConditionUnsupported,
    Failed(StoreError),
}

impl S3Store {
    /// Connects and checks the bucket: versioning `Enabled` and Object Lock
    /// `Enabled`. When `require_lock` (levels A, B, C) a bucket without them
    /// is refused with [`StoreError::Unavailable`] whose message says how to
    /// fix it (an operator can, and a retry then succeeds); otherwise a
    /// warning is logged and objects are written without lock headers.
    /// Credentials come from the standard AWS chain (environment, profile,
    /// web identity, ECS, EC2 instance metadata).
    pub async fn connect(settings: S3Settings, require_lock: bool) -> Result<S3Store, StoreError> {
        let store = S3Store::open(settings).await?;
        if let Some(problem) = store.protection.problem(&store.settings) {
            if require_lock {
                return Err(StoreError::Unavailable(format!(
                    "{problem}; this responsibility level requires it, so nothing is written until it is fixed"
                )));
            }
            tracing::warn!(
                store = %store.describe(),
                "{problem}; writing without Object Lock (allowed at this responsibility level)"
            );
        }
        Ok(store)
    }

    /// Connects and reads the bucket's protection without judging it; the
    /// caller decides with [`S3Store::protection`] (the agent refuses to
    /// start on an unprotected bucket at levels A, B, C, but only keeps
    /// retrying when the server cannot be reached).
    pub async fn open(settings: S3Settings) -> Result<S3Store, StoreError> {
        let client = build_client(&settings).await;
        let mut store = S3Store {
            client,
            settings,
            protection: BucketProtection {
                versioning: None,
                object_lock: false,
            },
            conditional_writes: AtomicBool::new(true),
        };
        store.protection = store.read_protection().await?;
        Ok(store)
    }

    /// The bucket's protection as found at connect time.
    pub fn protection(&self) -> &BucketProtection {
        &self.protection
    }

    pub fn settings(&self) -> &S3Settings {
        &self.settings
    }

    /// How many enabled lifecycle rules the bucket has (0 with none), or
    /// why they could not be read (say, no `s3:GetLifecycleConfiguration`
    /// permission). Without a rule nothing is ever removed from an Object
    /// Lock bucket (docs/s3.md), which the collector warns about.
    pub async fn enabled_lifecycle_rules(&self) -> Result<usize, String> {
        match self
            .client
            .get_bucket_lifecycle_configuration()
            .bucket(&self.settings.bucket)
            .send()
            .await
        {
            Ok(out) => Ok(out
                .rules()
                .iter()
                .filter(|r| *r.status() == aws_sdk_s3::types::ExpirationStatus::Enabled)
                .count()),
            Err(e) if e.code() == Some("NoSuchLifecycleConfiguration") => Ok(0),
            Err(e) => Err(format!(
                "GetBucketLifecycleConfiguration bucket {} ({}): {}",
                self.settings.bucket,
                self.where_(),
                DisplayErrorContext(&e)
            )),
        }
    }

    async fn read_protection(&self) -> Result<BucketProtection, StoreError> {
        let bucket = &self.settings.bucket;
        let versioning = self
            .client
            .get_bucket_versioning()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| self.sdk_error(Op::GetBucketVersioning, None, e))?;
        let versioning = versioning
            .status()
            .map(|s: &BucketVersioningStatus| s.as_str().to_string());
        let object_lock = match self
            .client
            .get_object_lock_configuration()
            .bucket(bucket)
            .send()
            .await
        {
            Ok(out) => out
                .object_lock_configuration()
                .and_then(|c| c.object_lock_enabled())
                .is_some_and(|e| *e == ObjectLockEnabled::Enabled),
            Err(e) if e.code() == Some("ObjectLockConfigurationNotFoundError") => false,
            Err(e) => return Err(self.sdk_error(Op::GetObjectLockConfiguration, None, e)),
        };
        Ok(BucketProtection {
            versioning,
            object_lock,
        })
    }

    /// `PREFIX/key`, or `key` when there is no prefix.
    fn full_key(&self, key: &str) -> String {
        if self.settings.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.settings.prefix)
        }
    }

    fn url(&self, key: &str) -> String {
        format!("s3://{}/{}", self.settings.bucket, self.full_key(key))
    }

    /// Puts a name on an SDK failure: which operation on which object or
    /// bucket, and for a denial which permission the credentials lack.
    fn sdk_error<E>(
        &self,
        op: Op,
        key: Option<&str>,
        err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let bucket = &self.settings.bucket;
        let target = match key {
            Some(k) => self.url(k),
            None => format!("bucket {bucket}"),
        };
        let at = self.where_();
        let SdkError::ServiceError(ctx) = &err else {
            // Timeouts, connection failures, unreadable responses, missing
            // credentials: all can clear up without anyone changing custody.
            return StoreError::Unavailable(format!(
                "{} {target} ({at}): {}",
                op.name(),
                DisplayErrorContext(&err)
            ));
        };
        let status = ctx.raw().status().as_u16();
        let code = ctx.err().code().unwrap_or("");
        let message = ctx.err().message().unwrap_or("");
        let said = if message.is_empty() {
            format!("HTTP {status} {code}")
        } else {
            format!("HTTP {status} {code}: {message}")
        };
        let text = if status == 403 || code == "AccessDenied" {
            format!(
                "{} {target} ({at}) was denied ({said}); the credentials need the {} permission on bucket {bucket}",
                op.name(),
                op.permission()
            )
        } else if code == "NoSuchBucket" {
            format!(
                "{} {target} ({at}): bucket {bucket} does not exist ({said}); create it with Object Lock: \
                 `aws s3api create-bucket --bucket {bucket} --object-lock-enabled-for-bucket` (see docs/s3.md)",
                op.name()
            )
        } else if status >= 500 || status == 429 || code == "SlowDown" || code == "RequestTimeout" {
            format!(
                "{} {target} ({at}): server error ({said}); retrying later",
                op.name()
            )
        } else {
            format!("{} {target} ({at}) was refused ({said})", op.name())
        };
        StoreError::Unavailable(text)
    }

    fn where_(&self) -> String {
        match &self.settings.endpoint {
            Some(e) => format!("endpoint {e}"),
            None => "AWS".to_string(),
        }
    }

    /// The time written as the object's retain-until: rounded up to the
    /// whole second, so no server's precision can make it earlier than
    /// asked.
    pub fn lock_time(retain_until: OffsetDateTime) -> OffsetDateTime {
        let t = retain_until.to_offset(time::UtcOffset::UTC);
        let whole = t.replace_nanosecond(0).unwrap_or(t);
        if whole == t {
            t
        } else {
            whole + time::Duration::SECOND
        }
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.settings.bucket)
            .key(self.full_key(key))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(self.sdk_error(Op::HeadObject, Some(key), e)),
        }
    }

    /// The name is taken: same bytes → AlreadyPresent, else Conflict.
    async fn compare_existing(&self, key: &str, bytes: &[u8]) -> Result<PutOutcome, StoreError> {
        let stored = self.get_bytes(key).await?;
        if stored == bytes {
            Ok(PutOutcome::AlreadyPresent)
        } else {
            Err(StoreError::Conflict {
                key: key.to_string(),
            })
        }
    }

    async fn get_bytes(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.settings.bucket)
            .key(self.full_key(key))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if is_not_found(&e) => {
                return Err(StoreError::NotFound {
                    key: key.to_string(),
                })
            }
            Err(e) => return Err(self.sdk_error(Op::GetObject, Some(key), e)),
        };
        let expected_len = out.content_length();
        let body = out.body.collect().await.map_err(|e| {
            StoreError::Unavailable(format!(
                "GetObject {} ({}): reading the body: {e}",
                self.url(key),
                self.where_()
            ))
        })?;
        let bytes = body.into_bytes().to_vec();
        if let Some(len) = expected_len {
            if u64::try_from(len).ok() != Some(bytes.len() as u64) {
                return Err(StoreError::Unavailable(format!(
                    "GetObject {} ({}): got {} bytes, the server announced {len}",
                    self.url(key),
                    self.where_(),
                    bytes.len()
                )));
            }
        }
        Ok(bytes)
    }

    async fn write(
        &self,
        key: &str,
        bytes: &[u8],
        retain: OffsetDateTime,
    ) -> Result<(), WriteFailure> {
        let conditional = self.conditional_writes.load(Ordering::Relaxed);
        let result = if bytes.len() as u64 > self.settings.multipart_threshold {
            self.write_multipart(key, bytes, retain, conditional).await
        } else {
            self.write_single(key, bytes, retain, conditional).await
        };
        if matches!(result, Err(WriteFailure::ConditionUnsupported)) {
            tracing::warn!(
                store = %self.describe(),
                "the server does not implement conditional writes (If-None-Match); relying on look-then-write, \
                 with versioning and Object Lock keeping the first version of a name"
            );
            self.conditional_writes.store(false, Ordering::Relaxed);
            return if bytes.len() as u64 > self.settings.multipart_threshold {
                self.write_multipart(key, bytes, retain, false).await
            } else {
                self.write_single(key, bytes, retain, false).await
            };
        }
        result
    }

    fn write_failure<E>(
        &self,
        op: Op,
        key: &str,
        err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> WriteFailure
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        if let SdkError::ServiceError(ctx) = &err {
            let status = ctx.raw().status().as_u16();
            let code = ctx.err().code().unwrap_or("");
            if status == 412 || code == "PreconditionFailed" {
                return WriteFailure::NameTaken;
            }
            if status == 501 || code == "NotImplemented" {
                return WriteFailure::ConditionUnsupported;
            }
        }
        WriteFailure::Failed(self.sdk_error(op, Some(key), err))
    }

    async fn write_single(
        &self,
        key: &str,
        bytes: &[u8],
        retain: OffsetDateTime,
        conditional: bool,
    ) -> Result<(), WriteFailure> {
        let checksum = sha256_base64(bytes);
        let mut req = self
            .client
            .put_object()
            .bucket(&self.settings.bucket)
            .key(self.full_key(key))
            .body(ByteStream::from(bytes.to_vec()))
            .content_length(bytes.len() as i64)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(&checksum)
            .metadata(RETAIN_UNTIL_METADATA, format_utc(retain));
        if self.protection.object_lock {
            req = req
                .object_lock_mode(ObjectLockMode::Compliance)
                .object_lock_retain_until_date(to_smithy(retain));
        }
        if conditional {
            req = req.if_none_match("*");
        }
        let out = req
            .send()
            .await
            .map_err(|e| self.write_failure(Op::PutObject, key, e))?;
        self.check_ack(key, out.checksum_sha256(), &checksum)
    }

    /// A server that reports a different checksum than we sent stored
    /// something else: say so rather than count the object as shipped.
    fn check_ack(&self, key: &str, acked: Option<&str>, sent: &str) -> Result<(), WriteFailure> {
        match acked {
            Some(acked) if acked != sent => Err(WriteFailure::Failed(StoreError::Corrupt {
                what: format!("object {}", self.url(key)),
                why: format!("the server acknowledged SHA-256 {acked} but we sent {sent}"),
            })),
            _ => Ok(()),
        }
    }

    async fn write_multipart(
        &self,
        key: &str,
        bytes: &[u8],
        retain: OffsetDateTime,
        conditional: bool,
    ) -> Result<(), WriteFailure> {
        let mut req = self
            .client
            .create_multipart_upload()
            .bucket(&self.settings.bucket)
            .key(self.full_key(key))
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .metadata(RETAIN_UNTIL_METADATA, format_utc(retain));
        if self.protection.object_lock {
            req = req
                .object_lock_mode(ObjectLockMode::Compliance)
                .object_lock_retain_until_date(to_smithy(retain));
        }
        let created = req.send().await.map_err(|e| {
            WriteFailure::Failed(self.sdk_error(Op::CreateMultipartUpload, Some(key), e))
        })?;
        let Some(upload_id) = created.upload_id().map(str::to_string) else {
            return Err(WriteFailure::Failed(StoreError::Unavailable(format!(
                "CreateMultipartUpload {} ({}): the response has no upload id",
                self.url(key),
                self.where_()
            ))));
        };
        let result = self.upload_parts(key, bytes, &upload_id, conditional).await;
        if result.is_err() {
            // Best effort: an unfinished upload holds storage until aborted.
            if let Err(e) = self
                .client
                .abort_multipart_upload()
                .bucket(&self.settings.bucket)
                .key(self.full_key(key))
                .upload_id(&upload_id)
                .send()
                .await
            {
                tracing::warn!(
                    key,
                    upload_id,
                    "aborting a failed multipart upload: {}",
                    DisplayErrorContext(&e)
                );
            }
        }
        result?;
        self.ensure_retention(key, retain).await
    }

    /// Some S3-compatible servers (moto 5.1, for one) accept Object Lock
    /// headers on CreateMultipartUpload but do not apply them. Look, and
    /// set the retention explicitly if the completed object lacks it.
    async fn ensure_retention(
        &self,
        key: &str,
        retain: OffsetDateTime,
    ) -> Result<(), WriteFailure> {
        if !self.protection.object_lock {
            return Ok(());
        }
        let head = self
            .client
            .head_object()
            .bucket(&self.settings.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|e| WriteFailure::Failed(self.sdk_error(Op::HeadObject, Some(key), e)))?;
        let applied = head.object_lock_mode() == Some(&ObjectLockMode::Compliance)
            && head
                .object_lock_retain_until_date()
                .and_then(from_smithy)
                .is_some_and(|t| t >= retain);
        if applied {
            return Ok(());
        }
        tracing::debug!(key, "the server did not apply the multipart upload's Object Lock headers; setting retention");
        self.client
            .put_object_retention()
            .bucket(&self.settings.bucket)
            .key(self.full_key(key))
            .retention(
                ObjectLockRetention::builder()
                    .mode(ObjectLockRetentionMode::Compliance)
                    .retain_until_date(to_smithy(retain))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| {
                WriteFailure::Failed(self.sdk_error(Op::PutObjectRetention, Some(key), e))
            })?;
        Ok(())
    }

    async fn upload_parts(
        &self,
        key: &str,
        bytes: &[u8],
        upload_id: &str,
        conditional: bool,
    ) -> Result<(), WriteFailure> {
        let mut parts = Vec::new();
        let mut digests = Vec::new();
        for (i, chunk) in bytes.chunks(PART_SIZE).enumerate() {
            let number = i32::try_from(i + 1).map_err(|_| {
                WriteFailure::Failed(StoreError::Unavailable(format!(
                    "{}: {} bytes need more parts than S3 allows",
                    self.url(key),
                    bytes.len()
                )))
            })?;
            let digest: [u8; 32] = Sha256::digest(chunk).into();
            let checksum = base64(&digest);
            let out = self
                .client
                .upload_part()
                .bucket(&self.settings.bucket)
                .key(self.full_key(key))
                .upload_id(upload_id)
                .part_number(number)
                .body(ByteStream::from(chunk.to_vec()))
                .content_length(chunk.len() as i64)
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .checksum_sha256(&checksum)
                .send()
                .await
                .map_err(|e| WriteFailure::Failed(self.sdk_error(Op::UploadPart, Some(key), e)))?;
            self.check_ack(key, out.checksum_sha256(), &checksum)?;
            let mut part = CompletedPart::builder()
                .part_number(number)
                .checksum_sha256(&checksum);
            if let Some(etag) = out.e_tag() {
                part = part.e_tag(etag);
            }
            parts.push(part.build());
            digests.extend_from_slice(&digest);
        }
        let mut req = self
            .client
            .complete_multipart_upload()
            .bucket(&self.settings.bucket)
            .key(self.full_key(key))
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts.clone()))
                    .build(),
            );
        if conditional {
            req = req.if_none_match("*");
        }
        let out = req
            .send()
            .await
            .map_err(|e| self.write_failure(Op::CompleteMultipartUpload, key, e))?;
        // S3's checksum of a multipart object is the SHA-256 of the parts'
        // SHA-256s, suffixed with the part count.
        let composite = format!("{}-{}", sha256_base64(&digests), parts.len());
        match out.checksum_sha256() {
            Some(acked) if acked != composite && acked.contains('-') => {
                Err(WriteFailure::Failed(StoreError::Corrupt {
                    what: format!("object {}", self.url(key)),
                    why: format!(
                        "the server acknowledged the multipart checksum {acked} but the parts we sent give {composite}"
                    ),
                }))
            }
            _ => Ok(()),
        }
    }
}

/// The operations we call, for messages and permission names.
#[derive(Debug, Clone, Copy)]
enum Op {
    GetBucketVersioning,
    GetObjectLockConfiguration,
    HeadObject,
    GetObject,
    PutObject,
    CreateMultipartUpload,
    UploadPart,
    CompleteMultipartUpload,
    ListObjectsV2,
    PutObjectLegalHold,
    PutObjectRetention,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::GetBucketVersioning => "GetBucketVersioning",
            Op::GetObjectLockConfiguration => "GetObjectLockConfiguration",
            Op::HeadObject => "HeadObject",
            Op::GetObject => "GetObject",
            Op::PutObject => "PutObject",
            Op::CreateMultipartUpload => "CreateMultipartUpload",
            Op::UploadPart => "UploadPart",
            Op::CompleteMultipartUpload => "CompleteMultipartUpload",
            Op::ListObjectsV2 => "ListObjectsV2",
            Op::PutObjectLegalHold => "PutObjectLegalHold",
            Op::PutObjectRetention => "PutObjectRetention",
        }
    }

    /// The IAM action that allows the operation (docs/s3.md lists them all).
    fn permission(self) -> &'static str {
        match self {
            Op::GetBucketVersioning => "s3:GetBucketVersioning",
            Op::GetObjectLockConfiguration => "s3:GetBucketObjectLockConfiguration",
            Op::HeadObject | Op::GetObject => {
                "s3:GetObject (and s3:GetObjectRetention, s3:GetObjectLegalHold)"
            }
            Op::PutObject
            | Op::CreateMultipartUpload
            | Op::UploadPart
            | Op::CompleteMultipartUpload => "s3:PutObject (and s3:PutObjectRetention)",
            Op::ListObjectsV2 => "s3:ListBucket",
            Op::PutObjectLegalHold => "s3:PutObjectLegalHold",
            Op::PutObjectRetention => "s3:PutObjectRetention",
        }
    }
}

/// HTTP 404 of any kind (HEAD has no body, so no error code to look at).
fn is_not_found<E>(err: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> bool
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::ServiceError(ctx) => {
            let code = ctx.err().code();
            code != Some("NoSuchBucket")
                && (ctx.raw().status().as_u16() == 404
                    || matches!(code, Some("NoSuchKey") | Some("NotFound")))
        }
        _ => false,
    }
}

fn sha256_base64(bytes: &[u8]) -> String {
    let digest: [u8; 32] = Sha256::digest(bytes).into();
    base64(&digest)
}

fn base64(bytes: &[u8]) -> String {
    aws_smithy_types::base64::encode(bytes)
}

fn to_smithy(t: OffsetDateTime) -> DateTime {
    DateTime::from_secs_and_nanos(t.unix_timestamp(), t.nanosecond())
}

fn from_smithy(t: &DateTime) -> Option<OffsetDateTime> {
    let secs = OffsetDateTime::from_unix_timestamp(t.secs()).ok()?;
    Some(secs + time::Duration::nanoseconds(i64::from(t.subsec_nanos())))
}

/// The SDK client: rustls with ring (no C toolchain needed), the SDK's
/// automatic checksums off (we send SHA-256 ourselves), bounded timeouts so
/// an outage shows up as an error the agent can report, not a hang.
async fn build_client(settings: &S3Settings) -> Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http.clone());
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    let shared = loader.load().await;
    let mut builder = aws_sdk_s3::config::Builder::from(&shared)
        .http_client(http)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .force_path_style(settings.path_style)
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .read_timeout(Duration::from_secs(60))
                .operation_attempt_timeout(Duration::from_secs(120))
                .build(),
        );
    if shared.region().is_none() {
        if settings.endpoint.is_none() {
            tracing::warn!(
                "no AWS region configured (s3_region, AWS_REGION or a profile); using {FALLBACK_REGION}"
            );
        }
        builder = builder.region(Region::new(FALLBACK_REGION));
    }
    if let Some(endpoint) = &settings.endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    Client::from_conf(builder.build())
}

#[async_trait]
impl ObjectStore for S3Store {
    fn describe(&self) -> String {
        let location = if self.settings.prefix.is_empty() {
            format!("s3://{}", self.settings.bucket)
        } else {
            format!("s3://{}/{}", self.settings.bucket, self.settings.prefix)
        };
        match &self.settings.endpoint {
            Some(e) => format!("{location} (endpoint {e})"),
            None => format!("{location} (AWS)"),
        }
    }

    async fn put(
        &self,
        key: &str,
        bytes: &[u8],
        opts: PutOptions,
    ) -> Result<PutOutcome, StoreError> {
        check_key(key)?;
        // A retry after a lost acknowledgement finds the object here.
        if self.exists(key).await? {
            return self.compare_existing(key, bytes).await;
        }
        match self
            .write(key, bytes, Self::lock_time(opts.retain_until))
            .await
        {
            Ok(()) => Ok(PutOutcome::Created),
            Err(WriteFailure::NameTaken) => self.compare_existing(key, bytes).await,
            Err(WriteFailure::ConditionUnsupported) => Err(StoreError::Unavailable(format!(
                "{}: the server refused a write without a condition as not implemented",
                self.url(key)
            ))),
            Err(WriteFailure::Failed(e)) => Err(e),
        }
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        check_key(key)?;
        self.get_bytes(key).await
    }

    /// Retention from `ObjectLockRetainUntilDate`, or from the
    /// `custody-retain-until` metadata on a bucket without Object Lock. An
    /// object with neither is [`StoreError::Corrupt`]: the store cannot
    /// vouch for its retention.
    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        check_key(key)?;
        let out = match self
            .client
            .head_object()
            .bucket(&self.settings.bucket)
            .key(self.full_key(key))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(self.sdk_error(Op::HeadObject, Some(key), e)),
        };
        let corrupt = |why: String| StoreError::Corrupt {
            what: format!("object {}", self.url(key)),
            why,
        };
        let retain_until = match out.object_lock_retain_until_date() {
            Some(t) => from_smithy(t)
                .ok_or_else(|| corrupt(format!("retain-until date {t} is out of range")))?,
            None => {
                let text = out
                    .metadata()
                    .and_then(|m| m.get(RETAIN_UNTIL_METADATA))
                    .ok_or_else(|| {
                        corrupt(
                            "it has neither an Object Lock retain-until date nor custody-retain-until metadata"
                                .to_string(),
                        )
                    })?;
                parse_utc(text).map_err(|e| {
                    corrupt(format!(
                        "its custody-retain-until metadata {text:?} is not a timestamp: {e}"
                    ))
                })?
            }
        };
        let len = out
            .content_length()
            .and_then(|l| u64::try_from(l).ok())
            .ok_or_else(|| corrupt("the server gave no length".to_string()))?;
        Ok(Some(ObjectInfo {
            key: key.to_string(),
            len,
            retain_until,
            legal_hold: out.object_lock_legal_hold_status() == Some(&ObjectLockLegalHoldStatus::On),
        }))
    }

    /// Current versions only (a name's first version is the evidence; the
    /// store never writes a second).
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let strip = if self.settings.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.settings.prefix)
        };
        let full_prefix = format!("{strip}{prefix}");
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.settings.bucket)
            .prefix(&full_prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.sdk_error(Op::ListObjectsV2, None, e))?;
            for object in page.contents() {
                if let Some(rest) = object.key().and_then(|k| k.strip_prefix(&strip)) {
                    keys.push(rest.to_string());
                }
            }
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// Places or lifts an Object Lock legal hold. Placing one on a missing
    /// object is [`StoreError::NotFound`]; lifting one from a missing object
    /// is a no-op, as in the filesystem store.
    async fn set_legal_hold(&self, key: &str, hold: bool) -> Result<(), StoreError> {
        check_key(key)?;
        if !self.protection.object_lock {
            return Err(StoreError::Unavailable(format!(
                "PutObjectLegalHold {}: bucket {} has no Object Lock, so it cannot hold objects; {}",
                self.url(key),
                self.settings.bucket,
                self.protection
                    .problem(&self.settings)
                    .unwrap_or_default()
            )));
        }
        // Ask first: servers differ in how they answer a hold on a missing
        // name (moto: HTTP 500), and the promise is NotFound.
        if !self.exists(key).await? {
            return if hold {
                Err(StoreError::NotFound {
                    key: key.to_string(),
                })
            } else {
                Ok(())
            };
        }
        let status = if hold {
            ObjectLockLegalHoldStatus::On
        } else {
            ObjectLockLegalHoldStatus::Off
        };
        match self
            .client
            .put_object_legal_hold()
            .bucket(&self.settings.bucket)
            .key(self.full_key(key))
            .legal_hold(ObjectLockLegalHold::builder().status(status).build())
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => {
                if hold {
                    Err(StoreError::NotFound {
                        key: key.to_string(),
                    })
                } else {
                    Ok(())
                }
            }
            Err(e) => Err(self.sdk_error(Op::PutObjectLegalHold, Some(key), e)),
        }
    }

    /// Deletes nothing. On S3, expired versions are removed by the bucket's
    /// lifecycle rule (docs/s3.md), and Object Lock refuses any deletion
    /// before retain-until whatever the rule says; the agent's credentials
    /// deliberately lack delete permissions.
    async fn prune(&self, _now: OffsetDateTime) -> Result<PruneReport, StoreError> {
        tracing::info!(
            store = %self.describe(),
            "S3 stores are pruned by the bucket lifecycle rule, not by custody (docs/s3.md); nothing deleted"
        );
        Ok(PruneReport::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn urls_split_into_checked_bucket_and_prefix() {
        assert_eq!(
            S3Settings::parse_url("s3://evidence-1/agents/web01/").unwrap(),
            ("evidence-1".to_string(), "agents/web01".to_string())
        );
        assert_eq!(
            S3Settings::parse_url("s3://evidence-1").unwrap(),
            ("evidence-1".to_string(), String::new())
        );
        for (url, needle) in [
            ("s3://Evidence/x", "lower-case"),
            ("s3://ab/x", "3 to 63"),
            ("s3://-abc/x", "begin and end"),
            ("s3://a..b/x", "adjacent periods"),
            ("s3://192.168.1.1/x", "IP address"),
            ("s3://xn--abc/x", "reserved"),
            ("s3://evidence/a//b", "prefix"),
            ("s3://evidence/.hidden", "prefix"),
            ("https://evidence/x", "s3://"),
        ] {
            let err = S3Settings::parse_url(url).unwrap_err();
            assert!(err.contains(needle), "{url}: {err}");
        }
    }

    #[test]
    fn lock_time_rounds_up_to_the_second_and_never_earlier() {
        let t = datetime!(2027-05-22 10:11:12.000001 UTC);
        assert_eq!(S3Store::lock_time(t), datetime!(2027-05-22 10:11:13 UTC));
        let whole = datetime!(2027-05-22 10:11:12 UTC);
        assert_eq!(S3Store::lock_time(whole), whole);
        let local = datetime!(2027-05-22 18:11:12.5 +08:00);
        assert_eq!(
            S3Store::lock_time(local),
            datetime!(2027-05-22 10:11:13 UTC)
        );
        assert_eq!(from_smithy(&to_smithy(t)), Some(t));
    }

    #[test]
    fn the_fix_message_names_the_commands() {
        let settings = S3Settings {
            endpoint: Some("http://127.0.0.1:9000".into()),
            ..S3Settings::new("evidence", "")
        };
        let unprotected = BucketProtection {
            versioning: None,
            object_lock: false,
        };
        let text = unprotected.problem(&settings).unwrap();
        assert!(text.contains("aws --endpoint-url http://127.0.0.1:9000 s3api create-bucket --bucket evidence --object-lock-enabled-for-bucket"), "{text}");
        assert!(text.contains("put-object-lock-configuration"), "{text}");
        assert!(
            text.contains("versioning: never enabled; Object Lock: not enabled"),
            "{text}"
        );
        let protected = BucketProtection {
            versioning: Some("Enabled".into()),
            object_lock: true,
        };
        assert_eq!(protected.problem(&settings), None);
        let suspended = BucketProtection {
            versioning: Some("Suspended".into()),
            object_lock: true,
        };
        assert!(suspended.problem(&settings).is_some());
    }

    #[test]
    fn checksums_are_base64_sha256() {
        // sha256("hello"), as S3 and boto3 print it.
        assert_eq!(
            sha256_base64(b"hello"),
            "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="
        );
    }
}
