# What an off-site bucket holds, as barkeep reads it: run by barkeep as
#   <Barman's python> -c <this file> [cloud options] SOURCE_URL SERVER_NAME
# with the same options, endpoint and credentials as the barman-cloud-* tools. Prints one JSON
# object: {"wals": [{"name", "key", "size", "modified"}], "backups": [{"id", "status",
# "begin_wal", "end_wal", "end_time", "size"}]}. Barman 3.3's own S3 listing does not paginate (1,000
# keys at most), so the WAL objects are listed here with boto3's paginator.
# Exit codes: 0 listed, 2 the endpoint cannot be reached, 5 the bucket does not exist, 6 the
# store refused the credentials, 1 anything else (3 is argparse's, as for the cloud tools).
import json
import logging
import os
import sys

from barman.clients.cloud_cli import UrlArgumentType, create_argument_parser
from barman.cloud import CloudBackupCatalog, configure_logging
from barman.cloud_providers import get_cloud_interface
from barman.xlog import is_any_xlog_file

COMPRESSED = (".gz", ".bz2", ".snappy")


def main():
    parser, _, _ = create_argument_parser(
        description="barkeep: list an off-site bucket",
        source_or_destination=UrlArgumentType.source,
    )
    config = parser.parse_args(sys.argv[1:])
    configure_logging(config)
    cloud = get_cloud_interface(config)
    if not cloud.test_connectivity():
        print("cannot reach the endpoint", file=sys.stderr)
        return 2
    if not cloud.bucket_exists:
        print("the bucket %s does not exist" % cloud.bucket_name, file=sys.stderr)
        return 5
    prefix = os.path.join(cloud.path, config.server_name, "wals") + "/"
    prefix = prefix.lstrip("/")
    wals = []
    pages = cloud.s3.meta.client.get_paginator("list_objects_v2").paginate(
        Bucket=cloud.bucket_name, Prefix=prefix
    )
    for page in pages:
        for obj in page.get("Contents") or []:
            base = os.path.basename(obj["Key"])
            name, ext = os.path.splitext(base)
            if not (ext in COMPRESSED and is_any_xlog_file(name)):
                name = base
            if not is_any_xlog_file(name):
                continue
            wals.append(
                {
                    "name": name,
                    "key": obj["Key"],
                    "size": obj.get("Size", 0),
                    "modified": obj["LastModified"].timestamp(),
                }
            )
    backups = []
    catalog = CloudBackupCatalog(cloud_interface=cloud, server_name=config.server_name)
    for backup_id, info in sorted(catalog.get_backup_list().items()):
        backups.append(
            {
                "id": backup_id,
                "status": info.status,
                "begin_wal": info.begin_wal,
                "end_wal": info.end_wal,
                "end_time": info.end_time.timestamp() if info.end_time else None,
                "size": info.size,
            }
        )
    json.dump({"wals": wals, "backups": backups}, sys.stdout)
    return 0


REFUSED = ("403", "401", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden")

try:
    sys.exit(main())
except SystemExit:
    raise
except Exception as exc:  # a message the person can act on, not a trace
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    if code in REFUSED:
        print("the store refused the credentials (%s)" % code, file=sys.stderr)
        sys.exit(6)
    logging.debug("details", exc_info=exc)
    print("%s: %s" % (type(exc).__name__, exc), file=sys.stderr)
    sys.exit(1)
