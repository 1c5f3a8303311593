#!/bin/sh
# certmesh package: after install and after upgrade (deb: configure
# [OLD-VERSION]; rpm: 1 on install, 2 on upgrade).
set -e
# The agent's control socket, /var/lib/certmesh/agent.sock, is for root and
# the members of the certmesh group.
if ! getent group certmesh >/dev/null; then
	groupadd --system certmesh
fi
chown root:certmesh /var/lib/certmesh
chmod 0710 /var/lib/certmesh
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
	# An upgrade restarts the units that were running, on the new binaries;
	# a first install starts nothing: configure first (docs/deploy.md).
	systemctl try-restart certmesh-agent.service certmesh-server.service certmesh-audit.service || true
fi
