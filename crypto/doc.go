// Package crypto is the root of fedge's cryptography. The work lives in its
// sub-packages, which import nothing of fedge outside crypto/ and own no
// network connections or background goroutines:
//
//   - identity: the cluster CA, join tokens, enrollment, TLS configurations.
//   - secagg:   SecAgg+ secure aggregation (the server learns only the sum).
//   - dp:       clipping, distributed Gaussian noise, the RDP accountant.
package crypto
