package identity

import (
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
)

// LoadPEMCert reads the first certificate of a PEM file.
func LoadPEMCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return x509.ParseCertificate(blk.Bytes)
}

// LoadPEMKey reads an Ed25519 PKCS#8 private key.
func LoadPEMKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an Ed25519 key", path)
	}
	return ek, nil
}

// LoadKeyPair loads a certificate and key as a tls.Certificate whose chain
// includes ca.
func LoadKeyPair(certPath, keyPath string, ca *x509.Certificate) (tls.Certificate, *x509.Certificate, error) {
	cert, err := LoadPEMCert(certPath)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	key, err := LoadPEMKey(keyPath)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tc, err := TLSCertificate(key, cert.Raw, ca)
	return tc, cert, err
}
