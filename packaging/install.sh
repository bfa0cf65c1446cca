#!/usr/bin/env bash
# Installs ringfence on a host from its wheelhouse (scripts/build-wheelhouse), offline:
#   tar xzf ringfence-VERSION-wheelhouse.tar.gz && sudo ringfence-VERSION/install.sh
#
# What it installs, and nothing else:
#   /opt/ringfence/releases/VERSION   a Python venv with ringfence (pip --no-index: these wheels)
#   /opt/ringfence/current            symbolic link to the release in use (switched atomically)
#   /usr/local/bin/ringfence          symbolic link to /opt/ringfence/current/bin/ringfence
#   /etc/systemd/system/ringfence-agent.service   the agent's unit (not enabled, not started)
#   /etc/default/ringfence            RINGFENCE_HOST=<this host's short name>, only when absent
#   /etc/ringfence                    mode 0750, root's (the cluster file, key, certificates)
#   /var/lib/ringfence                mode 0700, root's (the agent's state and journal)
#
# It never starts, stops, restarts, enables or disables a service: with systemd running it
# asks whether ringfence-agent is active (an upgrade under a running agent is refused: drain
# the host and stop the agent first) and runs `systemctl daemon-reload` so that systemd reads
# the new unit. It refuses, before changing anything, to replace a unit file or a
# /usr/local/bin/ringfence it did not install, and files in /etc/ringfence that other users
# may read (other than the cluster file, certificates and domain XML): keys and passwords are
# readable by root only (chmod 600), as the agent demands (--allow-insecure-secrets: install
# anyway, with a warning per file). Installing the same version again rebuilds its venv.
#
# Usage: install.sh [--prefix DIR] [--allow-insecure-secrets]   (as root)
# Exit codes: 0 installed, 1 refused or failed (the message says why and what to do), 2 usage.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
prefix=/opt/ringfence insecure=no
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || { echo "install.sh: --prefix needs a directory" >&2; exit 2; }
              prefix=$2; shift ;;
    --allow-insecure-secrets) insecure=yes ;;
    *) echo "install.sh: unknown argument '$1'" \
            "(usage: install.sh [--prefix DIR] [--allow-insecure-secrets])" >&2; exit 2 ;;
  esac
  shift
done
case "$prefix" in /*) ;; *) echo "install.sh: --prefix must be an absolute path" >&2; exit 2 ;; esac

fail() { echo "install.sh: $*" >&2; exit 1; }
marker="Installed by ringfence's install.sh"
unit=/etc/systemd/system/ringfence-agent.service
link=/usr/local/bin/ringfence
version=$(cat "$here/VERSION")
release=$prefix/releases/$version

[ "$(id -u)" = 0 ] || fail "run as root (sudo $0): it installs into $prefix, /etc and /var/lib"
command -v python3 >/dev/null || fail "python3 is missing: apt-get install python3 python3-venv"
python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null \
  || fail "python3 has no venv: apt-get install python3-venv"
have=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
[ "$have" = "$(cat "$here/PYTHON")" ] || fail "these wheels are for Python $(cat "$here/PYTHON")," \
  "this host has $have: build the wheelhouse on the Debian release the hosts run"

# --- refusals, before anything changes
systemd=no
[ -d /run/systemd/system ] && command -v systemctl >/dev/null && systemd=yes
if [ "$systemd" = yes ] && systemctl is-active --quiet ringfence-agent.service; then
  fail "ringfence-agent is running: drain this host (ringfence host maintenance HOST on)," \
       "stop it (systemctl stop ringfence-agent), then run install.sh again"
fi
if [ -e "$unit" ] && ! grep -qF "$marker" "$unit"; then
  fail "$unit exists and was not installed by ringfence's install.sh: move it away first"
fi
if [ -e "$link" ] || [ -L "$link" ]; then
  [ "$(readlink "$link" || true)" = "$prefix/current/bin/ringfence" ] \
    || fail "$link exists and is not ringfence's link to $prefix/current/bin/ringfence:" \
            "move it away first"
fi
if [ -d /etc/ringfence ]; then
  exposed=()
  while IFS= read -r -d '' file; do
    case "$file" in *.yaml|*.yml|*.xml) continue ;; esac
    if grep -q "BEGIN CERTIFICATE" "$file" 2>/dev/null && ! grep -q "PRIVATE KEY" "$file"; then
      continue  # a certificate is public
    fi
    exposed+=("$file")
  done < <(find /etc/ringfence -type f -perm /077 -print0)
  if [ ${#exposed[@]} -gt 0 ]; then
    for file in "${exposed[@]}"; do
      echo "install.sh: WARNING: $file is readable by users other than its owner" \
           "(mode $(stat -c %a "$file")): chmod 600 $file" >&2
    done
    [ "$insecure" = yes ] || fail "secrets readable by others (above): the agent refuses them;" \
                                  "chmod 600 them, or pass --allow-insecure-secrets"
  fi
fi

# --- the release: a fresh venv from these wheels only
rm -rf "$release"
mkdir -p "$prefix/releases"
python3 -m venv "$release"
extra=""
ls "$here"/wheels/libvirt_python-*.whl >/dev/null 2>&1 && extra="[libvirt]"
PIP_CONFIG_FILE=/dev/null "$release/bin/pip" install -q --no-index --no-cache-dir --disable-pip-version-check \
  --find-links "$here/wheels" "ringfence$extra==$version"
"$release/bin/ringfence" --version >/dev/null || fail "the installed ringfence does not run"
ln -sfn "releases/$version" "$prefix/current.new"
mv -T "$prefix/current.new" "$prefix/current"
mkdir -p /usr/local/bin
[ -L "$link" ] || ln -s "$prefix/current/bin/ringfence" "$link"

# --- directories, unit, defaults
install -d -m 0750 -o root -g root /etc/ringfence
chmod 0750 /etc/ringfence
install -d -m 0700 -o root -g root /var/lib/ringfence
mkdir -p /etc/systemd/system
{ echo "# $marker ($version); replaced by the next install.sh."; cat "$here/ringfence-agent.service"; } \
  > "$unit.new"
chmod 0644 "$unit.new"
mv "$unit.new" "$unit"
if [ ! -e /etc/default/ringfence ]; then
  mkdir -p /etc/default
  printf '# The host name of this host in the cluster file (hosts[].name).\nRINGFENCE_HOST=%s\n' \
    "$(hostname -s)" > /etc/default/ringfence
fi
[ "$systemd" = yes ] && systemctl daemon-reload

echo "ringfence $version installed in $release ($link)."
echo "Next: put the cluster file in /etc/ringfence/cluster.yaml, check RINGFENCE_HOST in"
echo "/etc/default/ringfence, run 'ringfence check /etc/ringfence/cluster.yaml', then"
echo "'systemctl enable --now ringfence-agent' (docs/installation.md)."
