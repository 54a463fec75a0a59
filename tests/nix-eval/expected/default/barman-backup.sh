@barman@/bin/barman -c /etc/barman.conf backup --wait pg
@barman@/bin/barman -c /etc/barman.conf check-backup pg latest
