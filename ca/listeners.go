package ca

import (
	"slices"
	"sync"
)

// listeners are the functions registered (OnCRL, OnRevoke, ...) to hear of
// one kind of event. They run outside any lock of the CA.
type listeners[T any] struct {
	mu  sync.Mutex
	fns []func(T)
}

func (l *listeners[T]) add(fn func(T)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fns = append(l.fns, fn)
}

// call calls every listener registered so far with v.
func (l *listeners[T]) call(v T) {
	l.mu.Lock()
	fns := slices.Clone(l.fns)
	l.mu.Unlock()
	for _, fn := range fns {
		fn(v)
	}
}
