// Package auth owns caller identity for payments-svc: the API key format, the
// keys file that maps SHA-256 digests of keys to merchants (reloaded when it
// changes), the merchant named by a verified client certificate, and the rule
// that joins the two into one merchant id. It stores no key, only digests, and
// no error or log line it produces carries key material.
package auth

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// A key is pk_<env>_<secret>: the secret is 32 characters of lowercase
// base32, 160 random bits. The prefix lets scanners and humans recognise a
// leaked key and its environment.
const (
	keyPrefix    = "pk_"
	secretLen    = 32
	secretBytes  = 20
	digestPrefix = "sha256:"
)

var (
	keyPattern      = regexp.MustCompile(`^pk_([a-z][a-z0-9]{0,15})_([a-z2-7]{32})$`)
	merchantPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	envPattern      = regexp.MustCompile(`^[a-z][a-z0-9]{0,15}$`)
	encoding        = base32.StdEncoding.WithPadding(base32.NoPadding)
)

// DevMerchant and DevKey are the deliberately public development identity:
// with no keys file, a development server accepts DevKey as DevMerchant so
// that `make run` needs no setup. Production refuses to start without a keys
// file or a client CA, so DevKey never works there.
const (
	DevMerchant = "m_dev"
	DevKey      = "pk_dev_yd6gdxgynqzqdeqmhvropepl65uclxmc" //nolint:gosec // public by design: development only
)

// ValidMerchantID reports whether id can name a merchant. Merchant ids appear
// in Redis key names and log lines, so their alphabet is closed.
func ValidMerchantID(id string) bool { return merchantPattern.MatchString(id) }

// NewKey returns a fresh API key for the environment env (live, test, dev…).
func NewKey(env string) (string, error) {
	if !envPattern.MatchString(env) {
		return "", fmt.Errorf("environment %q must be 1 to 16 lowercase letters or digits, starting with a letter", env)
	}
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("read randomness: %w", err)
	}
	return keyPrefix + env + "_" + strings.ToLower(encoding.EncodeToString(b)), nil
}

// Digest is the keys-file form of a key's SHA-256.
func Digest(key string) string {
	sum := sha256.Sum256([]byte(key))
	return digestPrefix + hex.EncodeToString(sum[:])
}

// Line is the keys-file line that grants key to merchant.
func Line(merchantID, key string) string { return merchantID + " " + Digest(key) }

// Keyring maps key digests to merchants. The zero value grants nothing.
type Keyring struct {
	grants map[[sha256.Size]byte]grant
}

type grant struct {
	digest   [sha256.Size]byte
	merchant string
}

// ParseKeys reads a keys file: one grant per line, "<merchant_id>
// sha256:<64 hex>", with blank lines and lines starting with # ignored. A
// merchant may hold several keys, which is how keys are rotated. Errors name
// the line number only.
func ParseKeys(data []byte) (*Keyring, error) {
	k := &Keyring{grants: map[[sha256.Size]byte]grant{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			return nil, fmt.Errorf("line %d: want \"<merchant_id> sha256:<hex>\", got %d fields", n, len(fields))
		}
		if !ValidMerchantID(fields[0]) {
			return nil, fmt.Errorf("line %d: merchant id must be 1 to 64 of A-Z a-z 0-9 _ -", n)
		}
		hexDigest, ok := strings.CutPrefix(fields[1], digestPrefix)
		var d [sha256.Size]byte
		if _, err := hex.Decode(d[:], []byte(hexDigest)); !ok || err != nil || len(hexDigest) != 2*sha256.Size {
			return nil, fmt.Errorf("line %d: digest must be sha256: and 64 hex characters", n)
		}
		if g, dup := k.grants[d]; dup && g.merchant != fields[0] {
			return nil, fmt.Errorf("line %d: the same key is granted to two merchants", n)
		}
		k.grants[d] = grant{digest: d, merchant: fields[0]}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read keys: %w", err)
	}
	return k, nil
}

// Len is the number of keys granted.
func (k *Keyring) Len() int { return len(k.grants) }

// lookup returns the merchant holding key. Only digests are compared: the
// map is indexed by the SHA-256 of what the caller sent, so a lookup's timing
// depends on a digest the caller cannot steer towards a stored one, and the
// grant found is checked again with a constant-time comparison, so no timing
// tells how close a guess came.
func (k *Keyring) lookup(key string) (string, bool) {
	d := sha256.Sum256([]byte(key))
	g, ok := k.grants[d]
	if !ok || subtle.ConstantTimeCompare(g.digest[:], d[:]) != 1 {
		return "", false
	}
	return g.merchant, true
}

// errBadKeyShape keeps the reason for a refusal in the server log without
// echoing what the caller sent.
var errBadKeyShape = errors.New("api key is not pk_<env>_<32 base32 characters>")
