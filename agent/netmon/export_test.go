package netmon

// WithoutEvents makes a monitor rely on its periodic re-read alone, as one
// whose netlink events were all lost.
func WithoutEvents(c Config) Config {
	c.noEvents = true
	return c
}
