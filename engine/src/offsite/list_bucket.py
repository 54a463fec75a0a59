# What an off-site bucket holds, as barkeep reads it (helper.py in front):
#   <Barman's python> -c <helper.py + this file> [cloud options] SOURCE_URL SERVER_NAME
# Prints one JSON object: {"wals": [{"name", "key", "size", "modified"}], "backups": [{"id",
# "status", "begin_wal", "end_wal", "end_time", "size"}]}.
from barman.cloud import CloudBackupCatalog


def list_bucket():
    config = parse_args("barkeep: list an off-site bucket")
    cloud = open_bucket(config)
    wals = [
        {
            "name": name,
            "key": obj["Key"],
            "size": obj.get("Size", 0),
            "modified": obj["LastModified"].timestamp(),
        }
        for obj, name, _ in wal_objects(cloud, config.server_name)
    ]
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


run(list_bucket)
