#!/bin/sh
# Start Cyrus, create user.alice once, then run Postfix in the foreground.
set -e
install -d -o cyrus -g mail -m 750 /run/cyrus /run/cyrus/socket
install -d -o cyrus -g mail -m 700 /run/cyrus/proc /run/cyrus/lock
/usr/lib/postfix/configure-instance.sh -   # the chroot's copy of /etc/hosts, resolv.conf ...
# The admin, in the realm Cyrus uses by default: this container's hostname.
echo baseline | saslpasswd2 -p -c cyrus
chown cyrus:mail /etc/sasldb2
/usr/sbin/cyrmaster -d
i=0
until [ -S /run/cyrus/socket/lmtp ] && echo | cyradm --user cyrus --password baseline \
        --auth PLAIN localhost >/dev/null 2>&1; do
    i=$((i + 1)); [ "$i" -lt 100 ] || { echo "cyrus did not start" >&2; exit 1; }
    sleep 0.1
done
# cyradm says nothing useful without a terminal; mbpath (set -e) tells whether it worked.
if ! /usr/sbin/cyrus mbpath user.alice >/dev/null 2>&1; then
    echo 'cm user.alice' | cyradm --user cyrus --password baseline --auth PLAIN localhost \
        >/dev/null 2>&1 || true
fi
/usr/sbin/cyrus mbpath user.alice
echo "baseline ready"
exec postfix start-fg
