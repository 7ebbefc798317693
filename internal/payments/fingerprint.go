package payments

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"slices"
)

// fingerprintVersion is the first byte hashed. Bump it if the encoding ever
// changes, so old and new fingerprints can never be confused.
const fingerprintVersion = 1

// Fingerprint is the SHA-256, in hex, of a canonical encoding of everything in
// a request that defines the payment: amount, currency, order_id and the
// metadata in key order. The idempotency key itself is not part of it.
//
// Every string is length-prefixed, so no two different requests share an
// encoding ("ab"+"c" and "a"+"bc" differ), and map order cannot leak in.
func Fingerprint(req Request) string {
	h := sha256.New()
	var buf [8]byte
	writeUint := func(n uint64) {
		binary.BigEndian.PutUint64(buf[:], n)
		h.Write(buf[:])
	}
	writeString := func(s string) {
		writeUint(uint64(len(s)))
		h.Write([]byte(s))
	}

	h.Write([]byte{fingerprintVersion})
	writeUint(uint64(req.AmountMinor))
	writeString(req.Currency)
	writeString(req.OrderID)
	writeUint(uint64(len(req.Metadata)))
	for _, k := range sortedKeys(req.Metadata) {
		writeString(k)
		writeString(req.Metadata[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
