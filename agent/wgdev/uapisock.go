package wgdev

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"golang.zx2c4.com/wireguard/ipc"
)

// uapiSocketDir is where ipc.UAPIOpen puts the sockets (wg(8) looks there).
const uapiSocketDir = "/var/run/wireguard"

// serveUAPI opens /var/run/wireguard/<name>.sock (mode 0700 via umask, as
// wireguard-go does) and serves wg(8) requests on it until Close.
func (d *Device) serveUAPI() error {
	f, err := ipc.UAPIOpen(d.name)
	if err != nil {
		return fmt.Errorf("opening UAPI socket for %s: %w", d.name, err)
	}
	ln, err := ipc.UAPIListen(d.name, f)
	f.Close() // UAPIListen dups the descriptor
	if err != nil {
		os.Remove(filepath.Join(uapiSocketDir, d.name+".sock"))
		return fmt.Errorf("listening on UAPI socket for %s: %w", d.name, err)
	}
	d.uapi = ln
	d.uapiDone = make(chan struct{})
	go func() {
		defer close(d.uapiDone)
		for {
			c, err := ln.Accept()
			if err != nil {
				select {
				case <-d.done:
				default:
					if !errors.Is(err, net.ErrClosed) {
						d.log.Warn("UAPI socket stopped", "err", err)
					}
				}
				return
			}
			go d.wg.IpcHandle(c)
		}
	}()
	return nil
}
