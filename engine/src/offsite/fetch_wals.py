# The WAL a restore from the bucket replays, fetched by barkeep before PostgreSQL starts
# (helper.py in front):
#   <Barman's python> -c <helper.py + this file> [cloud options] SOURCE_URL SERVER_NAME BEGIN_WAL DESTINATION
# Every history file and every segment from BEGIN_WAL's position on, on its timeline or a later
# one, is downloaded and decompressed into DESTINATION (which must exist) with Barman's own
# download call (the one barman-cloud-wal-restore makes per file), so that PostgreSQL's
# restore_command is a plain copy that needs neither the network nor the credentials.
# Prints {"fetched": N, "bytes": B}.
from barman.xlog import decode_segment_name, is_history_file, is_wal_file


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


def fetch_wals():
    config = parse_args(
        "barkeep: fetch the WAL of a restore from an off-site bucket",
        extra=("begin_wal", "destination"),
    )
    begin = decode_segment_name(config.begin_wal)
    if not os.path.isdir(config.destination):
        print("%s is not a directory" % config.destination, file=sys.stderr)
        return 1
    cloud = open_bucket(config)
    fetched = 0
    total = 0
    for obj, name, compression in wal_objects(cloud, config.server_name):
        if not wanted(name, begin):
            continue
        dest = os.path.join(config.destination, name)
        cloud.download_file(obj["Key"], dest, compression)
        fetched += 1
        total += os.path.getsize(dest)
    json.dump({"fetched": fetched, "bytes": total}, sys.stdout)
    return 0


run(fetch_wals)
