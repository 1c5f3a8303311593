#!/bin/sh
# certmesh package: before removal (deb: remove, or upgrade NEW-VERSION;
# rpm: 0 on erase, 1 on upgrade). Only a removal stops the units; an upgrade
# restarts them in postinstall.
set -e
case "$1" in
remove | 0)
	if [ -d /run/systemd/system ]; then
		systemctl disable --now certmesh-agent.service certmesh-server.service certmesh-audit.service >/dev/null 2>&1 || true
	fi
	;;
esac
