@barman@/bin/barman -c /etc/barman.conf backup --wait main
@barman@/bin/barman -c /etc/barman.conf check-backup main latest
