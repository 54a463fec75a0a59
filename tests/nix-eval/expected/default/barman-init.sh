@barman@/bin/barman -c /etc/barman.conf check pg || true # before the first WAL: "WAL archive: FAILED"
@barman@/bin/barman -c /etc/barman.conf switch-wal --force --archive pg
@barman@/bin/barman -c /etc/barman.conf check pg
# From now on an empty data directory is a restore in progress, never a fresh install.
echo "barkeep protects the cluster in /var/lib/postgresql/14; see barkeep's NixOS module" \
  > /var/lib/barkeep/initdb-guard
