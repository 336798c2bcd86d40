package localcluster

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Certs names the PEM files of the local cluster's PKI, all under Dir/pki.
type Certs struct {
	CACert, CAKey           string // the cluster CA (client-ca-file, root-ca-file, kubelet-certificate-authority)
	ServingCert, ServingKey string // kube-apiserver serving cert: 127.0.0.1, localhost, kubernetes.default...
	AdminCert, AdminKey     string // client cert: CN=sandboxtest-admin, O=system:masters
	// KubeletClientCert and KubeletClientKey are what kube-apiserver
	// presents to the kubelet API: CN=KubeletClientUser, no groups.
	KubeletClientCert, KubeletClientKey string
	ServiceAccountKey                   string // RSA private key signing service account tokens
	ServiceAccountPub                   string // its public key
	// EtcdCACert is the CA etcd trusts, for clients and peers. It is not
	// the cluster CA: kube-controller-manager signs approved CSRs with that
	// one, and no such certificate may reach etcd. Its key stays in memory.
	EtcdCACert                    string
	EtcdServerCert, EtcdServerKey string // etcd's serving and peer cert: 127.0.0.1
	EtcdClientCert, EtcdClientKey string // kube-apiserver's etcd client cert
	ca, etcdCA                    *CA
}

// CA returns the cluster CA, which can issue more certificates (for example a
// kubelet's serving certificate).
func (c *Certs) CA() *CA { return c.ca }

// CA is a certificate authority held in memory.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// CertRequest describes a certificate to issue.
type CertRequest struct {
	CommonName   string
	Organization []string
	DNSNames     []string
	IPs          []net.IP
	Usages       []x509.ExtKeyUsage // e.g. x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth
	Validity     time.Duration      // default 1 year
}

const pkiValidity = 365 * 24 * time.Hour

// NewCA makes a self-signed CA with an ECDSA P-256 key.
func NewCA(commonName string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := randSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * pkiValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

// LoadCA reads a CA from PEM files (as written by StartControlPlane).
func LoadCA(certFile, keyFile string) (*CA, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading CA: %w", err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, err
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("loading CA: key is not a signer")
	}
	return &CA{Cert: cert, Key: signer}, nil
}

// CertPEM is the CA certificate in PEM form.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// Issue signs a new certificate with a fresh ECDSA P-256 key and returns the
// certificate and key in PEM form.
func (ca *CA) Issue(req CertRequest) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := randSerial()
	if err != nil {
		return nil, nil, err
	}
	validity := req.Validity
	if validity <= 0 {
		validity = pkiValidity
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: req.CommonName, Organization: req.Organization},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  req.Usages,
		DNSNames:     req.DNSNames,
		IPAddresses:  req.IPs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

func randSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// AdminUser is the admin client certificate's common name; its group is system:masters.
const AdminUser = "sandboxtest-admin"

// KubeletClientUser is the common name of kube-apiserver's client certificate
// for kubelet APIs: the only client the process node's kubelet API serves.
const KubeletClientUser = "kube-apiserver-kubelet-client"

// writeCerts generates the cluster PKI into dir (created; files overwritten).
// serviceIP is the first address of the service range (the kubernetes Service).
func writeCerts(dir string, serviceIP net.IP) (*Certs, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ca, err := NewCA("sandboxtest-ca")
	if err != nil {
		return nil, fmt.Errorf("making CA: %w", err)
	}
	etcdCA, err := NewCA("sandboxtest-etcd-ca")
	if err != nil {
		return nil, fmt.Errorf("making etcd CA: %w", err)
	}
	c := &Certs{
		CACert:            filepath.Join(dir, "ca.crt"),
		CAKey:             filepath.Join(dir, "ca.key"),
		ServingCert:       filepath.Join(dir, "apiserver.crt"),
		ServingKey:        filepath.Join(dir, "apiserver.key"),
		AdminCert:         filepath.Join(dir, "admin.crt"),
		AdminKey:          filepath.Join(dir, "admin.key"),
		KubeletClientCert: filepath.Join(dir, "apiserver-kubelet-client.crt"),
		KubeletClientKey:  filepath.Join(dir, "apiserver-kubelet-client.key"),
		ServiceAccountKey: filepath.Join(dir, "sa.key"),
		ServiceAccountPub: filepath.Join(dir, "sa.pub"),
		EtcdCACert:        filepath.Join(dir, "etcd-ca.crt"),
		EtcdServerCert:    filepath.Join(dir, "etcd-server.crt"),
		EtcdServerKey:     filepath.Join(dir, "etcd-server.key"),
		EtcdClientCert:    filepath.Join(dir, "apiserver-etcd-client.crt"),
		EtcdClientKey:     filepath.Join(dir, "apiserver-etcd-client.key"),
		ca:                ca,
		etcdCA:            etcdCA,
	}
	caKeyDER, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		c.CACert:     ca.CertPEM(),
		c.CAKey:      pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: caKeyDER}),
		c.EtcdCACert: etcdCA.CertPEM(),
	}

	ips := []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback}
	if serviceIP != nil {
		ips = append(ips, serviceIP)
	}
	files[c.ServingCert], files[c.ServingKey], err = ca.Issue(CertRequest{
		CommonName: "kube-apiserver",
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
		IPs:    ips,
		Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("issuing apiserver serving cert: %w", err)
	}
	files[c.AdminCert], files[c.AdminKey], err = ca.Issue(CertRequest{
		CommonName:   AdminUser,
		Organization: []string{"system:masters"},
		Usages:       []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("issuing admin client cert: %w", err)
	}
	files[c.KubeletClientCert], files[c.KubeletClientKey], err = ca.Issue(CertRequest{
		CommonName: KubeletClientUser,
		Usages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("issuing kube-apiserver's kubelet client cert: %w", err)
	}
	// etcd's one certificate serves clients and peers and, as a peer, is a
	// client too.
	files[c.EtcdServerCert], files[c.EtcdServerKey], err = etcdCA.Issue(CertRequest{
		CommonName: "etcd",
		IPs:        []net.IP{net.ParseIP("127.0.0.1")},
		Usages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("issuing etcd serving cert: %w", err)
	}
	files[c.EtcdClientCert], files[c.EtcdClientKey], err = etcdCA.Issue(CertRequest{
		CommonName: "kube-apiserver-etcd-client",
		Usages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("issuing kube-apiserver's etcd client cert: %w", err)
	}

	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("making service account key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, err
	}
	files[c.ServiceAccountKey] = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(saKey)})
	files[c.ServiceAccountPub] = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})

	for path, data := range files {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return nil, err
		}
	}
	return c, nil
}
