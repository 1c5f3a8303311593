package wire

// PathServerCertificate is where a coordinator that runs apart from the CA
// (certmesh-server run --role coord) renews its server TLS certificate:
// over mTLS with its current, still valid server certificate, sending a
// CSR for a key it generated itself. The CA signs; the coordinator never
// holds a signing key.
const PathServerCertificate = "/v1/ca/server-certificate"

// ServerCertificateRequest asks for a fresh server certificate for the
// key of CSR (DER, signed by that key).
type ServerCertificateRequest struct {
	CSR []byte `json:"csr"`
}

// ServerCertificateResponse is the issued certificate followed by its
// intermediate(s), each DER.
type ServerCertificateResponse struct {
	Chain [][]byte `json:"chain"`
}
