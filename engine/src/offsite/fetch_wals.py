# The WAL a restore from the bucket replays, fetched by barkeep before PostgreSQL starts: run as
#   <Barman's python> -c <this file> [cloud options] SOURCE_URL SERVER_NAME BEGIN_WAL DESTINATION
# with the same options, endpoint and credentials as the barman-cloud-* tools. Every history file
# and every segment from BEGIN_WAL's position on, on its timeline or a later one, is downloaded
# and decompressed into DESTINATION (which must exist) with Barman's own download code (the
# call barman-cloud-wal-restore makes per file), so that PostgreSQL's restore_command is a plain
# copy that needs neither the network nor the credentials. Prints {"fetched": N, "bytes": B}.
# Exit codes as the listing's: 0 fetched, 2 the endpoint cannot be reached, 5 the bucket does not
# exist, 6 the store refused the credentials, 1 anything else.
import json
import logging
import os
import sys

from barman.clients.cloud_cli import UrlArgumentType, create_argument_parser
from barman.cloud import ALLOWED_COMPRESSIONS, configure_logging
from barman.cloud_providers import get_cloud_interface
from barman.xlog import decode_segment_name, is_any_xlog_file, is_history_file, is_wal_file


def wanted(name, begin):
    """History files always; a segment on the backup's timeline or a later one, from the
    backup's first segment on (a later timeline forks after it)."""
    if is_history_file(name):
        return True
    if not is_wal_file(name):
        return False
    tli, log, seg = decode_segment_name(name)
    btli, blog, bseg = begin
    return tli >= btli and (log, seg) >= (blog, bseg)


def main():
    parser, _, _ = create_argument_parser(
        description="barkeep: fetch the WAL of a restore from an off-site bucket",
        source_or_destination=UrlArgumentType.source,
    )
    parser.add_argument("begin_wal")
    parser.add_argument("destination")
    config = parser.parse_args(sys.argv[1:])
    configure_logging(config)
    begin = decode_segment_name(config.begin_wal)
    if not os.path.isdir(config.destination):
        print("%s is not a directory" % config.destination, file=sys.stderr)
        return 1
    cloud = get_cloud_interface(config)
    if not cloud.test_connectivity():
        print("cannot reach the endpoint", file=sys.stderr)
        return 2
    if not cloud.bucket_exists:
        print("the bucket %s does not exist" % cloud.bucket_name, file=sys.stderr)
        return 5
    prefix = os.path.join(cloud.path, config.server_name, "wals") + "/"
    prefix = prefix.lstrip("/")
    pages = cloud.s3.meta.client.get_paginator("list_objects_v2").paginate(
        Bucket=cloud.bucket_name, Prefix=prefix
    )
    fetched = 0
    total = 0
    for page in pages:
        for obj in page.get("Contents") or []:
            base = os.path.basename(obj["Key"])
            name, compression = base, None
            for ext, scheme in ALLOWED_COMPRESSIONS.items():
                if base.endswith(ext):
                    name, compression = base[: -len(ext)], scheme
                    break
            if not is_any_xlog_file(name) or not wanted(name, begin):
                continue
            dest = os.path.join(config.destination, name)
            cloud.download_file(obj["Key"], dest, compression)
            fetched += 1
            total += os.path.getsize(dest)
    json.dump({"fetched": fetched, "bytes": total}, sys.stdout)
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
