//go:build !amd64 || purego

package secagg

func addKeystream(dst []uint32, ks []byte) { addKeystreamGeneric(dst, ks) }
func subKeystream(dst []uint32, ks []byte) { subKeystreamGeneric(dst, ks) }
func addVec(dst, src []uint32)             { addVecGeneric(dst, src) }
