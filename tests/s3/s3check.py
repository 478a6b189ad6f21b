#!/usr/bin/env python3
"""What the S3 tests ask a stock client (boto3) about a bucket.

The Rust tests never judge an S3 bucket through custody's own S3 code:
they run this script, which talks to the server with boto3 and prints one
JSON document on stdout. Errors from the server are printed as JSON too
(with the S3 error code) when the caller asked for a refusal; anything
else unexpected exits non-zero with the traceback on stderr.

Credentials and region come from the environment (the tests set
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION); addressing is
path-style, as for any self-hosted server.

Commands:
  create-bucket ENDPOINT BUCKET [--lock]   create (with Object Lock if --lock)
  dump ENDPOINT BUCKET DIR                 download every current object to
                                           DIR/<key>; print each object's lock
                                           mode, retain-until, checksum, hold
  delete-version ENDPOINT BUCKET KEY       try to delete the current version
                                           of KEY by version id
  lifecycle ENDPOINT BUCKET FILE           apply the lifecycle JSON in FILE,
                                           read it back and print it
  put-locked ENDPOINT BUCKET KEY DAYS      put KEY with Object Lock COMPLIANCE
                                           until DAYS days from now
  expire-early ENDPOINT BUCKET KEY         do what the lifecycle rule does, now:
                                           delete KEY without a version id (a
                                           delete marker, as Expiration), then
                                           delete its noncurrent versions by id
                                           (as NoncurrentVersionExpiration)
"""

import datetime
import json
import os
import sys

try:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError
except ImportError:  # pragma: no cover - reported to the Rust test
    sys.stderr.write("install moto[server] and boto3 (pip): boto3 is missing\n")
    sys.exit(3)


def client(endpoint):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 2},
            # The tests compare checksums themselves; botocore's own response
            # validation trips on moto's multipart checksums (no "-N" suffix).
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def iso(t):
    """A datetime as RFC 3339 UTC with a Z, the form the Rust side parses."""
    if t is None:
        return None
    return t.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def create_bucket(s3, bucket, lock):
    if lock:
        s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    else:
        s3.create_bucket(Bucket=bucket)
    return {"bucket": bucket, "object_lock": lock}


def dump(s3, bucket, out_dir):
    objects = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for entry in page.get("Contents", []):
            key = entry["Key"]
            head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            path = os.path.join(out_dir, key)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(body)
            objects.append(
                {
                    "key": key,
                    "len": len(body),
                    "version_id": head.get("VersionId"),
                    "lock_mode": head.get("ObjectLockMode"),
                    "retain_until": iso(head.get("ObjectLockRetainUntilDate")),
                    "legal_hold": head.get("ObjectLockLegalHoldStatus"),
                    "checksum_sha256": head.get("ChecksumSHA256"),
                    "metadata": head.get("Metadata", {}),
                }
            )
    versions = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        versions += len(page.get("Versions", []))
    return {"objects": objects, "versions": versions}


def delete_version(s3, bucket, key):
    version = s3.head_object(Bucket=bucket, Key=key)["VersionId"]
    try:
        s3.delete_object(Bucket=bucket, Key=key, VersionId=version)
    except ClientError as e:
        return {"refused": True, "code": e.response["Error"]["Code"], "version_id": version}
    return {"refused": False, "version_id": version}


def lifecycle(s3, bucket, path):
    with open(path) as f:
        rule = json.load(f)
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=rule)
    back = s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    return {"Rules": back["Rules"]}


def put_locked(s3, bucket, key, days):
    until = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=days)
    r = s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=b"evidence under retention\n",
        ChecksumAlgorithm="SHA256",
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=until,
    )
    return {"version_id": r.get("VersionId"), "retain_until": iso(until)}


def expire_early(s3, bucket, key):
    marker = s3.delete_object(Bucket=bucket, Key=key)
    refusals = []
    for v in s3.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", []):
        if v["Key"] != key:
            continue
        try:
            s3.delete_object(Bucket=bucket, Key=key, VersionId=v["VersionId"])
            refusals.append({"version_id": v["VersionId"], "refused": False})
        except ClientError as e:
            refusals.append(
                {"version_id": v["VersionId"], "refused": True, "code": e.response["Error"]["Code"]}
            )
    left = [
        v["VersionId"]
        for v in s3.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", [])
        if v["Key"] == key
    ]
    return {
        "delete_marker": bool(marker.get("DeleteMarker")),
        "version_deletes": refusals,
        "versions_left": left,
    }


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    command, endpoint, bucket, rest = argv[0], argv[1], argv[2], argv[3:]
    s3 = client(endpoint)
    if command == "create-bucket":
        result = create_bucket(s3, bucket, "--lock" in rest)
    elif command == "dump" and len(rest) == 1:
        result = dump(s3, bucket, rest[0])
    elif command == "delete-version" and len(rest) == 1:
        result = delete_version(s3, bucket, rest[0])
    elif command == "lifecycle" and len(rest) == 1:
        result = lifecycle(s3, bucket, rest[0])
    elif command == "put-locked" and len(rest) == 2:
        result = put_locked(s3, bucket, rest[0], int(rest[1]))
    elif command == "expire-early" and len(rest) == 1:
        result = expire_early(s3, bucket, rest[0])
    else:
        sys.stderr.write(__doc__)
        return 2
    json.dump(result, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
