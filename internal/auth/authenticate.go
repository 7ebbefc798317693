package auth

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
)

// ErrUnauthenticated wraps every refusal. The wrapped reason is for the
// server log; callers are told only that their credentials were refused.
var ErrUnauthenticated = errors.New("unauthenticated")

// Credentials is what a caller presented, as the transport found it.
type Credentials struct {
	// Authorization holds every value of the authorization header or
	// metadata key.
	Authorization []string
	// VerifiedChains are the client certificate chains the TLS handshake
	// verified against the client CA; empty without mTLS.
	VerifiedChains [][]*x509.Certificate
}

// Keys is where the Authenticator finds the keys in force.
type Keys interface {
	Keyring() *Keyring
}

// Static is a fixed Keys, for the development key and for tests.
type Static struct{ Ring *Keyring }

// Keyring returns the fixed keys.
func (s Static) Keyring() *Keyring { return s.Ring }

// DevKeys grants DevKey to DevMerchant and nothing else.
func DevKeys() Static {
	ring, err := ParseKeys([]byte(Line(DevMerchant, DevKey)))
	if err != nil {
		panic(err) // a constant that does not parse is a bug caught by any test
	}
	return Static{Ring: ring}
}

// Authenticator turns credentials into a merchant id.
type Authenticator struct {
	keys Keys
}

// NewAuthenticator returns an Authenticator over keys; nil keys accept
// certificates only.
func NewAuthenticator(keys Keys) *Authenticator {
	return &Authenticator{keys: keys}
}

// Authenticate returns the merchant the credentials prove. A bearer API key
// and a verified client certificate are each enough; when both are present
// they must name the same merchant, so a stolen key cannot act for another
// merchant over a certificate's connection.
func (a *Authenticator) Authenticate(c Credentials) (string, error) {
	certMerchant, err := merchantFromChains(c.VerifiedChains)
	if err != nil {
		return "", err
	}
	keyMerchant, err := a.merchantFromKey(c.Authorization)
	if err != nil {
		return "", err
	}
	switch {
	case certMerchant != "" && keyMerchant != "" && certMerchant != keyMerchant:
		return "", fmt.Errorf("%w: api key and client certificate name different merchants", ErrUnauthenticated)
	case certMerchant != "":
		return certMerchant, nil
	case keyMerchant != "":
		return keyMerchant, nil
	default:
		return "", fmt.Errorf("%w: no api key and no client certificate", ErrUnauthenticated)
	}
}

// merchantFromKey returns "" when no key was sent.
func (a *Authenticator) merchantFromKey(values []string) (string, error) {
	switch len(values) {
	case 0:
		return "", nil
	case 1:
	default:
		return "", fmt.Errorf("%w: %d authorization values, want one", ErrUnauthenticated, len(values))
	}
	scheme, key, ok := strings.Cut(values[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", fmt.Errorf("%w: authorization is not \"Bearer <api key>\"", ErrUnauthenticated)
	}
	key = strings.TrimSpace(key)
	if !keyPattern.MatchString(key) {
		return "", fmt.Errorf("%w: %w", ErrUnauthenticated, errBadKeyShape)
	}
	if a.keys == nil {
		return "", fmt.Errorf("%w: api keys are not accepted here", ErrUnauthenticated)
	}
	ring := a.keys.Keyring()
	if ring == nil {
		return "", fmt.Errorf("%w: unknown api key", ErrUnauthenticated)
	}
	m, ok := ring.lookup(key)
	if !ok {
		return "", fmt.Errorf("%w: unknown api key", ErrUnauthenticated)
	}
	return m, nil
}

// spiffePathPrefix is the path of a merchant's SPIFFE id:
// spiffe://<trust domain>/merchant/<id>. The trust domain is whatever the
// client CA signs for; the CA is the authority.
const spiffePathPrefix = "/merchant/"

// merchantFromChains returns the merchant of the verified leaf certificate,
// "" when there is none.
func merchantFromChains(chains [][]*x509.Certificate) (string, error) {
	if len(chains) == 0 || len(chains[0]) == 0 {
		return "", nil
	}
	leaf := chains[0][0]
	var found string
	for _, u := range leaf.URIs {
		if u.Scheme != "spiffe" {
			continue
		}
		id, ok := strings.CutPrefix(u.Path, spiffePathPrefix)
		if !ok || !ValidMerchantID(id) {
			continue
		}
		if found != "" && found != id {
			return "", fmt.Errorf("%w: client certificate names two merchants", ErrUnauthenticated)
		}
		found = id
	}
	if found == "" {
		return "", fmt.Errorf("%w: client certificate has no spiffe://…/merchant/<id> URI SAN", ErrUnauthenticated)
	}
	return found, nil
}

// Bearer sends an API key with every gRPC call, as
// grpc.WithPerRPCCredentials(auth.Bearer(key)). It does not insist on TLS,
// because development servers and tests run without it; over a network the
// key belongs inside TLS.
type Bearer string

// GetRequestMetadata returns the authorization metadata.
func (b Bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity allows plaintext connections.
func (Bearer) RequireTransportSecurity() bool { return false }
