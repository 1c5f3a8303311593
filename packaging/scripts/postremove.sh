#!/bin/sh
# certmesh package: after removal or upgrade. Keys, certificates, the
# server's state and the certmesh group stay: removing them is the
# operator's decision.
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
