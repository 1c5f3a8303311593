package tpmkey

import (
	"errors"
	"io"
	"sync"

	legacy "github.com/google/go-tpm/legacy/tpm2"
	"go.step.sm/crypto/tpm/storage"
)

// deviceChannel is the command channel to the configured TPM device. It
// opens the device on first use and closes it when go.step.sm/crypto
// closes the TPM after each operation, so the device is held only while a
// command runs (as go.step.sm/crypto does with its own probing).
type deviceChannel struct {
	path string
	mu   sync.Mutex
	rwc  io.ReadWriteCloser
}

func (c *deviceChannel) get() (io.ReadWriteCloser, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rwc == nil {
		rwc, err := legacy.OpenTPM(c.path)
		if err != nil {
			return nil, err
		}
		c.rwc = rwc
	}
	return c.rwc, nil
}

func (c *deviceChannel) Read(p []byte) (int, error) {
	rwc, err := c.get()
	if err != nil {
		return 0, err
	}
	return rwc.Read(p)
}

func (c *deviceChannel) Write(p []byte) (int, error) {
	rwc, err := c.get()
	if err != nil {
		return 0, err
	}
	return rwc.Write(p)
}

func (c *deviceChannel) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rwc == nil {
		return nil
	}
	err := c.rwc.Close()
	c.rwc = nil
	return err
}

// MeasurementLog is not used: certmesh does not attest boot state.
func (c *deviceChannel) MeasurementLog() ([]byte, error) { return nil, nil }

func isStoreNotFound(err error) bool { return errors.Is(err, storage.ErrNotFound) }
