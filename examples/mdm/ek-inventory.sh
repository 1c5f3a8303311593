#!/bin/sh
# MDM inventory attribute (Jamf extension attribute, Intune custom attribute,
# Fleet/osquery, ...): prints this machine's TPM endorsement-key fingerprint,
# the value certmesh-server eks add|import takes. Set CERTMESH_INVENTORY=jamf
# for Jamf's <result>...</result> form.
set -eu
device=${CERTMESH_TPM_DEVICE:-/dev/tpmrm0}
fp=$(certmesh tpm ek --tpm-device "$device" 2>/dev/null | awk '$1 == "ek-sha256" { print $2 }') || fp=
[ -n "$fp" ] || fp="no-tpm"
if [ "${CERTMESH_INVENTORY:-}" = jamf ]; then
  echo "<result>$fp</result>"
else
  echo "$fp"
fi
