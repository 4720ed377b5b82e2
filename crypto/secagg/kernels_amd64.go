//go:build amd64 && !purego

package secagg

// addKeystream adds the little-endian words of ks (len(ks) >= 4*len(dst))
// to dst modulo 2^32.
//
//go:noescape
func addKeystream(dst []uint32, ks []byte)

// subKeystream subtracts the little-endian words of ks from dst.
//
//go:noescape
func subKeystream(dst []uint32, ks []byte)

// addVec adds src (len(src) >= len(dst)) to dst modulo 2^32.
//
//go:noescape
func addVec(dst, src []uint32)
