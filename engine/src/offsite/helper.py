# The part barkeep's Python helpers share (each is run as `<Barman's python> -c` with this file
# in front of its own): opening the bucket with the same options, endpoint and credentials as
# the barman-cloud-* tools, its WAL objects through boto3's paginator (Barman 3.3's own S3
# listing stops at 1,000 keys), and the exit codes barkeep reads: 0 done, 2 the endpoint cannot
# be reached, 5 the bucket does not exist, 6 the store refused the credentials, 1 anything else
# (3 is argparse's, as for the cloud tools).
import json
import logging
import os
import sys

from barman.clients.cloud_cli import UrlArgumentType, create_argument_parser
from barman.cloud import ALLOWED_COMPRESSIONS, configure_logging
from barman.cloud_providers import get_cloud_interface
from barman.xlog import is_any_xlog_file

REFUSED = ("403", "401", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden")


def parse_args(description, extra=()):
    """The cloud tools' options and SOURCE_URL SERVER_NAME, then the helper's own arguments."""
    parser, _, _ = create_argument_parser(
        description=description, source_or_destination=UrlArgumentType.source
    )
    for name in extra:
        parser.add_argument(name)
    config = parser.parse_args(sys.argv[1:])
    configure_logging(config)
    return config


def open_bucket(config):
    """The cloud interface, once the endpoint answers and the bucket exists (else exits)."""
    cloud = get_cloud_interface(config)
    if not cloud.test_connectivity():
        print("cannot reach the endpoint", file=sys.stderr)
        sys.exit(2)
    if not cloud.bucket_exists:
        print("the bucket %s does not exist" % cloud.bucket_name, file=sys.stderr)
        sys.exit(5)
    return cloud


def wal_objects(cloud, server_name):
    """Every WAL file object under <prefix>/<server>/wals/: (object, WAL name, compression)."""
    prefix = os.path.join(cloud.path, server_name, "wals") + "/"
    pages = cloud.s3.meta.client.get_paginator("list_objects_v2").paginate(
        Bucket=cloud.bucket_name, Prefix=prefix.lstrip("/")
    )
    for page in pages:
        for obj in page.get("Contents") or []:
            base = os.path.basename(obj["Key"])
            name, compression = base, None
            for ext, scheme in ALLOWED_COMPRESSIONS.items():
                if base.endswith(ext) and is_any_xlog_file(base[: -len(ext)]):
                    name, compression = base[: -len(ext)], scheme
                    break
            if is_any_xlog_file(name):
                yield obj, name, compression


def run(main):
    """main's exit code; a message the person can act on, not a trace, when it fails."""
    try:
        sys.exit(main())
    except SystemExit:
        raise
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        if code in REFUSED:
            print("the store refused the credentials (%s)" % code, file=sys.stderr)
            sys.exit(6)
        logging.debug("details", exc_info=exc)
        print("%s: %s" % (type(exc).__name__, exc), file=sys.stderr)
        sys.exit(1)


