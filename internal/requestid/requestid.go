// Package requestid owns request ids, shared by the gRPC and HTTP planes: a
// caller's id is kept when it is safe to log and echo, and replaced otherwise.
package requestid

import "crypto/rand"

// MaxLen bounds an accepted id.
const MaxLen = 128

// Resolve returns id when it is 1 to MaxLen printable ASCII characters
// without spaces, and a fresh random id otherwise.
func Resolve(id string) string {
	if valid(id) {
		return id
	}
	return rand.Text()
}

func valid(s string) bool {
	if s == "" || len(s) > MaxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
