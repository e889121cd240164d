#!/usr/bin/env bash
# Build debian:bookworm-slim locally with debootstrap and `docker import` it,
# for machines that reach a Debian mirror but no container registry.
# Usage: images/base/build.sh [TAG]   (default TAG: debian:bookworm-slim)
# The mirror is the one this machine's apt uses, unless DEBIAN_MIRROR is set.
set -euo pipefail

tag="${1:-debian:bookworm-slim}"

if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "base image $tag already present"
  exit 0
fi

mirror="${DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
  # deb822 sources (URIs:) or one-line sources (deb URL suite ...)
  mirror=$(grep -hs -E '^URIs:' /etc/apt/sources.list.d/debian.sources | awk '{print $2; exit}' || true)
  [ -n "$mirror" ] || mirror=$(grep -hs -E '^deb +(\[[^]]*\] +)?https?://[^ ]+ +bookworm( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
      | sed -E 's/^deb +(\[[^]]*\] +)?//' | awk '{print $1; exit}' || true)
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
fi

command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }

root=$(mktemp -d /var/tmp/bookworm-root.XXXXXX)
trap 'rm -rf "$root"' EXIT

echo "debootstrap bookworm from $mirror"
debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$mirror" >/dev/null

# What the official slim image does: no docs, man pages or locales, and apt
# that keeps them out of every later layer too.
cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
CFG
cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Install-Recommends "false";
Acquire::Languages "none";
CFG
printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$mirror" \
  >"$root/etc/apt/sources.list.d/debian.sources"
rm -f "$root/etc/apt/sources.list"
find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
rm -rf "$root"/usr/share/man/* "$root"/usr/share/locale/* "$root"/usr/share/info/* \
       "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/tmp/*

tar -C "$root" -c . | docker import \
  --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' - "$tag" >/dev/null
echo "built $tag"
