package ca

import (
	"fmt"
	"math/big"
	"net/netip"
)

// addressesFor derives a device's overlay addresses from a never-reused
// allocation index: the index-th address of the IPv4 and of the IPv6 range.
func addressesFor(cfg *Config, index uint64) ([]netip.Addr, error) {
	v4, err := nthAddr(cfg.OverlayV4, index)
	if err != nil {
		return nil, err
	}
	v6, err := nthAddr(cfg.OverlayV6, index)
	if err != nil {
		return nil, err
	}
	return []netip.Addr{v4, v6}, nil
}

// nthAddr returns prefix's base + n, refusing the last address of an IPv4
// range (broadcast) and anything outside the prefix.
func nthAddr(p netip.Prefix, n uint64) (netip.Addr, error) {
	base := p.Masked().Addr()
	hostBits := base.BitLen() - p.Bits()
	size := new(big.Int).Lsh(big.NewInt(1), uint(hostBits))
	if base.Is4() {
		size.Sub(size, big.NewInt(1)) // keep the broadcast address free
	}
	idx := new(big.Int).SetUint64(n)
	if n == 0 || idx.Cmp(size) >= 0 {
		return netip.Addr{}, refuse(CodeExhausted, "overlay range %s has no address left (index %d)", p, n)
	}
	b := base.AsSlice()
	sum := new(big.Int).Add(new(big.Int).SetBytes(b), idx).Bytes()
	out := make([]byte, len(b))
	copy(out[len(out)-len(sum):], sum)
	a, ok := netip.AddrFromSlice(out)
	if !ok || !p.Contains(a) {
		return netip.Addr{}, fmt.Errorf("allocating address %d in %s: out of range", n, p)
	}
	return a, nil
}
