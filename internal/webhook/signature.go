// Package webhook owns the provider webhook contract of payments-svc: Standard
// Webhooks v1 signatures (HMAC-SHA256 over "id.timestamp.body", several
// secrets for rotation, constant-time comparison) and the strict decoding of
// settlement events. It does no I/O; the HTTP transport calls it in order:
// verify the raw bytes first, decode second.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The Standard Webhooks headers.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

const (
	secretPrefix = "whsec_"
	sigVersion   = "v1,"
	// minSecretBytes keeps secrets at HMAC-SHA256 strength or near it.
	minSecretBytes = 24
	maxIDLen       = 255
	// maxSignatures bounds the work one request can ask of the verifier.
	maxSignatures = 16
)

// Verification failures. Callers answer 401 for both and say no more than
// the error text: which header or which comparison failed is not disclosed.
var (
	ErrSignature = errors.New("signature verification failed")
	ErrTimestamp = errors.New("timestamp outside tolerance")
)

// ParseSecret decodes a "whsec_<base64>" secret into its key bytes.
func ParseSecret(s string) ([]byte, error) {
	raw, ok := strings.CutPrefix(strings.TrimSpace(s), secretPrefix)
	if !ok {
		return nil, errors.New(`must start with "whsec_"`)
	}
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		return nil, errors.New("must be whsec_ followed by standard base64")
	}
	if len(key) < minSecretBytes {
		return nil, fmt.Errorf("must decode to at least %d bytes, got %d", minSecretBytes, len(key))
	}
	return key, nil
}

// Sign returns the signature header entry "v1,<base64>" for a message. The
// provider simulator and the tests sign with it; the service only verifies.
func Sign(key []byte, id string, timestamp int64, body []byte) string {
	return sigVersion + base64.StdEncoding.EncodeToString(mac(key, id, strconv.FormatInt(timestamp, 10), body))
}

func mac(key []byte, id, timestamp string, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(id))
	h.Write([]byte{'.'})
	h.Write([]byte(timestamp))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Verifier checks Standard Webhooks signatures against every active secret.
type Verifier struct {
	keys      [][]byte
	tolerance time.Duration
	now       func() time.Time
}

// NewVerifier returns a Verifier for the given secrets. Any of them may sign,
// which is how secrets rotate: add the new one, move the provider over, then
// drop the old one. now is the clock; nil means time.Now.
func NewVerifier(keys [][]byte, tolerance time.Duration, now func() time.Time) *Verifier {
	if now == nil {
		now = time.Now
	}
	return &Verifier{keys: keys, tolerance: tolerance, now: now}
}

// Verify checks the headers against the raw body. The signature is checked
// before the timestamp, so a sender without a secret only ever learns
// ErrSignature.
func (v *Verifier) Verify(id, timestamp, signatures string, body []byte) error {
	if id == "" || len(id) > maxIDLen || timestamp == "" || signatures == "" {
		return ErrSignature
	}
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return ErrSignature
	}
	entries := strings.Fields(signatures)
	if len(entries) > maxSignatures {
		return ErrSignature
	}
	expected := make([][]byte, len(v.keys))
	for i, k := range v.keys {
		expected[i] = mac(k, id, timestamp, body)
	}
	matched := false
	for _, e := range entries {
		b64, ok := strings.CutPrefix(e, sigVersion)
		if !ok {
			continue // other versions may appear; they are not ours to judge
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			continue
		}
		for _, want := range expected {
			if hmac.Equal(got, want) {
				matched = true
			}
		}
	}
	if !matched {
		return ErrSignature
	}
	skew := v.now().Sub(time.Unix(ts, 0))
	if skew > v.tolerance || skew < -v.tolerance {
		return ErrTimestamp
	}
	return nil
}
