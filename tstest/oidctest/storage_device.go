package oidctest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/zitadel/oidc/v3/pkg/op"
)

// ---- device authorization grant (RFC 8628) ----

type deviceEntry struct {
	userCode string
	state    *op.DeviceAuthorizationState
}

func (s *storage) StoreDeviceAuthorization(_ context.Context, clientID, deviceCode, userCode string, expires time.Time, scopes []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.clients[clientID]; !ok {
		return fmt.Errorf("oidctest: unknown client %q", clientID)
	}
	if _, ok := s.userCodes[userCode]; ok {
		return op.ErrDuplicateUserCode
	}
	s.deviceCodes[deviceCode] = &deviceEntry{
		userCode: userCode,
		state: &op.DeviceAuthorizationState{
			ClientID: clientID,
			Scopes:   slices.Clone(scopes),
			Expires:  expires,
		},
	}
	s.userCodes[userCode] = deviceCode
	return nil
}

// GetDeviceAuthorizatonState answers the device's poll. Once approved, the
// device code is handed out exactly once.
func (s *storage) GetDeviceAuthorizatonState(ctx context.Context, clientID, deviceCode string) (*op.DeviceAuthorizationState, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.deviceCodes[deviceCode]
	if !ok || e.state.ClientID != clientID {
		return nil, errors.New("oidctest: unknown device code")
	}
	st := *e.state
	st.Scopes = slices.Clone(e.state.Scopes)
	if st.Done || st.Denied {
		delete(s.deviceCodes, deviceCode)
		delete(s.userCodes, e.userCode)
	}
	return &st, nil
}

// decideDevice approves (or denies) the pending device authorization with
// user code userCode on behalf of sub.
func (s *storage) decideDevice(userCode, sub string, approve bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.deviceCodes[s.userCodes[userCode]]
	if !ok {
		return errors.New("unknown or used user code")
	}
	if time.Now().After(e.state.Expires) {
		return errors.New("user code expired")
	}
	if e.state.Done || e.state.Denied {
		return errors.New("user code already used")
	}
	if !approve {
		e.state.Denied = true
		return nil
	}
	e.state.Subject = sub
	e.state.Done = true
	e.state.AuthTime = time.Now()
	e.state.AMR = []string{"pwd"}
	return nil
}
