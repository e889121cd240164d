# The mail appliance: Postfix, saslauthd, postgrey, Cyrus IMAP and fetchmail from
# Debian bookworm, run and configured by the mailctl controller (tini is PID 1).
# No registry? `images/base/build.sh` makes debian:bookworm-slim with debootstrap.
ARG BASE=debian:bookworm-slim
FROM ${BASE}

ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# The controller's threads (API, watchers, log pumps) need no malloc arena each: ~4 MB less.
ENV MALLOC_ARENA_MAX=2

# dbconfig-no-thanks: else opendmarc's optional database setup pulls in a MariaDB client
# (80 MB) for aggregate reports, which this appliance does not send.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      postfix postfix-lmdb postfix-pcre \
      sasl2-bin libsasl2-modules libsasl2-modules-db libpam-pwdfile \
      postgrey \
      cyrus-imapd cyrus-pop3d \
      fetchmail \
      opendkim opendmarc dbconfig-no-thanks postfix-policyd-spf-python postsrsd python3-milter \
      tini openssl ca-certificates python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/apt /var/log/dpkg.log \
 # Postfix's meta files leave /etc/postfix, which becomes a link into the live revision.
 && mkdir -p /usr/lib/postfix/meta \
 && cp -rL /etc/postfix/postfix-files /etc/postfix/postfix-files.d /etc/postfix/dynamicmaps.cf \
       /etc/postfix/dynamicmaps.cf.d /etc/postfix/postfix-script /etc/postfix/post-install \
       /etc/postfix/makedefs.out /etc/postfix/main.cf.proto /etc/postfix/master.cf.proto \
       /usr/lib/postfix/meta/ \
 && rm -rf /etc/postfix /etc/imapd.conf /etc/cyrus.conf \
 && mkdir -p /etc/mailctl \
 && ln -s /etc/mailctl/current/postfix /etc/postfix \
 && ln -s /etc/mailctl/current/cyrus/imapd.conf /etc/imapd.conf \
 && ln -s /etc/mailctl/current/cyrus/cyrus.conf /etc/cyrus.conf \
 && for s in smtp imap pop sieve; do ln -sf /etc/mailctl/current/pam/$s /etc/pam.d/$s; done \
 # postfix reaches saslauthd's socket (group sasl), Cyrus's LMTP socket (group mail) and
 # OpenDKIM's and OpenDMARC's (groups opendkim, opendmarc);
 # Cyrus reads the TLS key (group ssl-cert).
 && adduser postfix sasl && adduser postfix mail \
 && adduser postfix opendkim && adduser postfix opendmarc \
 # mailctl.authres, the milter that folds the verdicts into one header, runs as its own user
 && adduser --system --group --no-create-home --home /nonexistent authres \
 && adduser postfix authres \
 && adduser cyrus ssl-cert \
 # saslpasswd2, saslauthd -a sasldb and the chroot copy all use /etc/sasldb2: on the users volume.
 && ln -sf /var/lib/mailctl/users/sasldb2 /etc/sasldb2

# Wheels fetched by images/wheels/fetch.sh make this step offline; without them pip uses PyPI.
COPY images/wheels /wheels
COPY controller /src/controller
RUN python3 -m venv /opt/mailctl \
 && if ls /wheels/*.whl >/dev/null 2>&1; \
    then /opt/mailctl/bin/pip install --no-cache-dir --disable-pip-version-check --no-index \
           --find-links /wheels -r /wheels/requirements.txt \
      && /opt/mailctl/bin/pip install --no-cache-dir --disable-pip-version-check --no-index \
           --no-deps --no-build-isolation /src/controller; \
    else /opt/mailctl/bin/pip install --no-cache-dir --disable-pip-version-check /src/controller; fi \
 && rm -rf /src /wheels /root/.cache \
 && find /opt/mailctl -name __pycache__ -prune -exec rm -rf {} + \
 && ln -s /opt/mailctl/bin/mailctl /usr/local/bin/mailctl

EXPOSE 25 465 587 143 993 110 995 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/opt/mailctl/bin/python", "-c", "import sys,urllib.request as u; sys.exit(0 if u.urlopen('http://127.0.0.1:8080/readyz', timeout=4).status == 200 else 1)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "/opt/mailctl/bin/mailctl"]
CMD ["run"]
