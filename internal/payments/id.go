package payments

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
)

// A payment_id looks like
//
//	pay_01JDZ5Y7T3QK6M2W8N9P0R4S5V_3fa9c2d1
//
// "pay_" is an opaque type prefix; the 26 characters after it are a ULID
// (48-bit millisecond timestamp, then 80 random bits, Crockford base32), so ids
// sort by creation time; the 8 lowercase hex characters after the last "_"
// are the Redis Cluster hash tag of the payment's idempotency scope, the
// merchant and its idempotency key. Every character is URL-safe.
//
// The tag is why GetPayment needs nothing but the id: it names the cluster
// slot that holds both the payment and its idempotency record.
const (
	idPrefix = "pay_"
	tagLen   = 8
	idLen    = len(idPrefix) + ulid.EncodedSize + 1 + tagLen
)

// ErrMalformedID is returned by ParseID for anything that is not a
// payment_id. It is an input error, distinct from ErrNotFound.
var ErrMalformedID = errors.New("malformed payment_id")

// HashTag derives the Redis Cluster hash tag shared by every key of one
// payment from its idempotency scope: the merchant and the merchant's
// idempotency key. Hashing spreads payments evenly across slots and keeps
// client-chosen characters such as '{' out of key names. The merchant id is
// length-prefixed, so no merchant and key pair can pose as another.
func HashTag(merchantID, idempotencyKey string) string {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(merchantID)))
	h.Write(n[:])
	h.Write([]byte(merchantID))
	h.Write([]byte(idempotencyKey))
	return hex.EncodeToString(h.Sum(nil)[:tagLen/2])
}

// NewID returns a fresh payment_id for a payment created at now under the
// given merchant and idempotency key.
func NewID(merchantID, idempotencyKey string, now time.Time) string {
	id := ulid.MustNew(ulid.Timestamp(now), ulid.DefaultEntropy())
	return idPrefix + id.String() + "_" + HashTag(merchantID, idempotencyKey)
}

// ParseID checks the format of a payment_id and returns its hash tag.
func ParseID(id string) (tag string, err error) {
	if len(id) != idLen || !strings.HasPrefix(id, idPrefix) || id[idLen-tagLen-1] != '_' {
		return "", ErrMalformedID
	}
	// ULIDs parse case-insensitively; only the canonical upper-case form is a
	// payment_id, so one payment never has two spellings.
	part := id[len(idPrefix) : len(idPrefix)+ulid.EncodedSize]
	if u, err := ulid.ParseStrict(part); err != nil || u.String() != part {
		return "", ErrMalformedID
	}
	tag = id[idLen-tagLen:]
	for i := 0; i < len(tag); i++ {
		c := tag[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", ErrMalformedID
		}
	}
	return tag, nil
}

// Digest is the full SHA-256, in hex, of a client-chosen string such as an
// idempotency key or a webhook id: it names Redis keys without letting the
// client choose their length or characters.
func Digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
