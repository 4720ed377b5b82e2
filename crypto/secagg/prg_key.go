package secagg

// sboxTable is the AES S-box, computed once from its definition (inverse
// in GF(2^8) followed by the affine map) rather than typed in. Read-only.
var sboxTable = func() (t [256]byte) {
	for i := range t {
		t[i] = sbox(byte(i))
	}
	return t
}()

// expandKey128 writes the 11 AES-128 round keys of key into rk, in the
// byte order AES instructions take them.
func expandKey128(rk *[176]byte, key []byte) {
	sub := func(b byte) byte { return sboxTable[b] }
	copy(rk[:16], key[:16])
	rcon := byte(1)
	for i := 16; i < 176; i += 4 {
		t := [4]byte{rk[i-4], rk[i-3], rk[i-2], rk[i-1]}
		if i%16 == 0 {
			t = [4]byte{sub(t[1]) ^ rcon, sub(t[2]), sub(t[3]), sub(t[0])}
			rcon = gfMul(rcon, 2)
		}
		for j := 0; j < 4; j++ {
			rk[i+j] = rk[i-16+j] ^ t[j]
		}
	}
}

// gfMul multiplies in GF(2^8) modulo x^8 + x^4 + x^3 + x + 1.
func gfMul(a, b byte) byte {
	var p byte
	for b != 0 {
		if b&1 != 0 {
			p ^= a
		}
		hi := a & 0x80
		a <<= 1
		if hi != 0 {
			a ^= 0x1b
		}
		b >>= 1
	}
	return p
}

// sbox is the AES S-box: the multiplicative inverse (0 for 0) then the
// affine transformation.
func sbox(x byte) byte {
	inv := byte(0)
	if x != 0 {
		// x^254 = x^-1 in GF(2^8)
		r, p := byte(1), x
		for e := 254; e > 0; e >>= 1 {
			if e&1 != 0 {
				r = gfMul(r, p)
			}
			p = gfMul(p, p)
		}
		inv = r
	}
	rotl := func(b byte, n uint) byte { return b<<n | b>>(8-n) }
	return inv ^ rotl(inv, 1) ^ rotl(inv, 2) ^ rotl(inv, 3) ^ rotl(inv, 4) ^ 0x63
}
