#!/bin/sh
# certmesh agent provisioning, for an MDM to run as root on each Linux device
# (Intune's, Jamf's or Fleet's "run a script", an Ansible shell task, ...).
# It installs the agent as a systemd service pointed at your CA, with the root
# fingerprint pinned, and in TPM mode prints the TPM's EK fingerprint so that
# the MDM's inventory can hand it to the security team's allow-list.
#
# Settings (environment):
#   CERTMESH_SERVER            the CA's URL, https://...            (required)
#   CERTMESH_ROOT_FINGERPRINT  the root's SHA-256, as `certmesh-server init`
#                              printed it (hex, colons allowed)      (required)
#   CERTMESH_TPM=1             keep the device key in the TPM and enroll by
#                              TPM attestation (no token needed once the EK is
#                              allow-listed: certmesh-server eks import)
#   CERTMESH_TPM_DEVICE        the TPM (default /dev/tpmrm0)
#   CERTMESH_TOKEN             a one-time enrollment token (token enrollment,
#                              or a TPM whose EK is not allow-listed)
#   CERTMESH_BIN               the certmesh binary to install (default: the
#                              one next to this script, else the installed one)
#   CERTMESH_NO_START=1        install only; do not enable or start the unit
#   CERTMESH_PREFIX            install under this directory instead of /
#
# Everything is checked before anything is written: a wrong setting leaves
# the machine as it was. Running it again updates the settings in place.
set -eu
umask 077

die() { echo "certmesh provisioning: $*" >&2; exit 1; }

here=$(cd "$(dirname "$0")" && pwd)
prefix=${CERTMESH_PREFIX:-}
server=${CERTMESH_SERVER:-}
fingerprint=${CERTMESH_ROOT_FINGERPRINT:-}
tpm=${CERTMESH_TPM:-0}
tpm_device=${CERTMESH_TPM_DEVICE:-/dev/tpmrm0}
token=${CERTMESH_TOKEN:-}

# ---- check
case $server in
  https://?*) ;;
  "") die "CERTMESH_SERVER is not set (the CA's URL, https://...)" ;;
  *) die "CERTMESH_SERVER=$server: the CA is reached over TLS only, want https://..." ;;
esac
case $server in
  *[!A-Za-z0-9.:/_-]*) die "CERTMESH_SERVER=$server has characters a URL of a CA does not need" ;;
esac
fp=$(printf '%s' "$fingerprint" | tr -d ':' | tr 'A-F' 'a-f')
if [ -z "$fingerprint" ]; then
  die "CERTMESH_ROOT_FINGERPRINT is not set (printed by certmesh-server init)"
fi
if [ ${#fp} -ne 64 ] || [ -n "$(printf '%s' "$fp" | tr -d '0-9a-f')" ]; then
  die "CERTMESH_ROOT_FINGERPRINT=$fingerprint is not a SHA-256 fingerprint (64 hex digits, colons allowed)"
fi
case $tpm in
  0|1) ;;
  *) die "CERTMESH_TPM=$tpm: want 1 (TPM attestation) or 0" ;;
esac
case $token in
  *[!A-Za-z0-9._-]*) die "CERTMESH_TOKEN has characters no certmesh token has" ;;
esac

bin=${CERTMESH_BIN:-}
if [ -z "$bin" ]; then
  if [ -x "$here/certmesh" ]; then bin=$here/certmesh
  elif [ -x "$prefix/usr/local/bin/certmesh" ]; then bin=$prefix/usr/local/bin/certmesh
  else die "no certmesh binary: put it next to this script or set CERTMESH_BIN"
  fi
fi
[ -x "$bin" ] || die "CERTMESH_BIN=$bin is not an executable"
"$bin" agent --help >/dev/null 2>&1 || die "$bin does not run here (wrong architecture?)"

unit=$here/certmesh-agent.service
[ -f "$unit" ] || unit=$here/../systemd/certmesh-agent.service
[ -f "$unit" ] || die "certmesh-agent.service not found next to this script or in ../systemd"

flags=
ek=
if [ "$tpm" = 1 ]; then
  [ -e "$tpm_device" ] || die "CERTMESH_TPM=1 but there is no TPM at $tpm_device (set CERTMESH_TPM_DEVICE, or CERTMESH_TPM=0 with a token)"
  ek=$("$bin" tpm ek --tpm-device "$tpm_device" 2>&1) || die "reading the TPM's endorsement key at $tpm_device: $ek"
  flags="--tpm --tpm-device $tpm_device"
elif [ -z "$token" ] && [ ! -s "$prefix/var/lib/certmesh/enrollment.json" ]; then
  echo "certmesh provisioning: no CERTMESH_TOKEN and no TPM: the agent will wait for a token in /etc/certmesh/token" >&2
fi

# ---- write (each file complete, then renamed into place)
put() { # put MODE DEST: stdin to DEST, atomically
  mkdir -p "$(dirname "$2")"
  tmp=$2.tmp.$$
  cat >"$tmp"
  chmod "$1" "$tmp"
  mv -f "$tmp" "$2"
}
mkdir -p "$prefix/etc/certmesh"
chmod 0700 "$prefix/etc/certmesh"
if [ "$bin" != "$prefix/usr/local/bin/certmesh" ]; then
  put 0755 "$prefix/usr/local/bin/certmesh" <"$bin"
fi
put 0600 "$prefix/etc/certmesh/agent.env" <<ENV
# Written by certmesh provisioning; run it again to change.
CERTMESH_SERVER=$server
CERTMESH_ROOT_FINGERPRINT=$fp
CERTMESH_AGENT_FLAGS=$flags
ENV
if [ -n "$token" ]; then
  printf '%s\n' "$token" | put 0600 "$prefix/etc/certmesh/token"
fi
put 0644 "$prefix/etc/systemd/system/certmesh-agent.service" <"$unit"

if [ "${CERTMESH_NO_START:-0}" != 1 ]; then
  systemctl daemon-reload
  systemctl enable certmesh-agent.service
  systemctl restart certmesh-agent.service
fi

# For the MDM's inventory (a custom attribute): the security team imports
# these with certmesh-server eks import.
if [ -n "$ek" ]; then
  printf '%s\n' "$ek" | awk '$1 == "ek-sha256" { print "certmesh-ek-sha256=" $2 }'
fi
echo "certmesh provisioning: done ($server, root $fp${flags:+, $flags})"
