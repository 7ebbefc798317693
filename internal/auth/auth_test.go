package auth

import (
	"crypto/x509"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/payments-svc/payments-svc/internal/testsupport"
)

func mustKey(t *testing.T, env string) string {
	t.Helper()
	k, err := NewKey(env)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestNewKey(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		k := mustKey(t, "live")
		if !keyPattern.MatchString(k) || !strings.HasPrefix(k, "pk_live_") {
			t.Fatalf("NewKey(live) = %q, want pk_live_ and 32 base32 characters", k)
		}
		if seen[k] {
			t.Fatalf("NewKey returned %q twice", k)
		}
		seen[k] = true
	}
	for _, env := range []string{"", "Live", "live_1", "l-ive", "abcdefghijklmnopq"} {
		if _, err := NewKey(env); err == nil {
			t.Errorf("NewKey(%q) = nil error, want one", env)
		}
	}
	if !keyPattern.MatchString(DevKey) {
		t.Errorf("DevKey %q does not have the key format", DevKey)
	}
}

func TestParseKeys(t *testing.T) {
	k1, k2 := mustKey(t, "test"), mustKey(t, "test")
	tests := []struct {
		name    string
		file    string
		wantLen int
		wantErr string
	}{
		{"empty", "", 0, ""},
		{"comments and blanks", "# rotation in progress\n\n  \n" + Line("m_1", k1) + "\n", 1, ""},
		{"two keys one merchant", Line("m_1", k1) + "\n" + Line("m_1", k2), 2, ""},
		{"same grant twice", Line("m_1", k1) + "\n" + Line("m_1", k1), 1, ""},
		{"one field", "m_1\n", 0, "line 1: want"},
		{"three fields", Line("m_1", k1) + " extra", 0, "got 3 fields"},
		{"bad merchant", "m/1 " + Digest(k1), 0, "merchant id"},
		{"no prefix", "m_1 " + strings.TrimPrefix(Digest(k1), "sha256:"), 0, "digest"},
		{"short digest", "m_1 sha256:abcd", 0, "digest"},
		{"not hex", "m_1 sha256:" + strings.Repeat("zz", 32), 0, "digest"},
		{"key in two merchants", Line("m_1", k1) + "\n" + Line("m_2", k1), 0, "line 2: the same key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ring, err := ParseKeys([]byte(tt.file))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseKeys() error = %v, want it to contain %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), k1) || strings.Contains(err.Error(), Digest(k1)[7:]) {
					t.Errorf("error %q carries key material", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseKeys() error = %v", err)
			}
			if got := ring.Len(); got != tt.wantLen {
				t.Errorf("Len() = %d, want %d", got, tt.wantLen)
			}
		})
	}
}

func leaf(uris ...string) [][]*x509.Certificate {
	c := &x509.Certificate{}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			panic(err)
		}
		c.URIs = append(c.URIs, u)
	}
	return [][]*x509.Certificate{{c}}
}

func TestAuthenticate(t *testing.T) {
	a1, a2, b1 := mustKey(t, "live"), mustKey(t, "live"), mustKey(t, "live")
	ring, err := ParseKeys([]byte(strings.Join([]string{Line("m_a", a1), Line("m_a", a2), Line("m_b", b1)}, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	auth := NewAuthenticator(Static{Ring: ring})
	unknown := mustKey(t, "live")
	tests := []struct {
		name    string
		creds   Credentials
		want    string
		wantErr string
	}{
		{"key", Credentials{Authorization: []string{"Bearer " + a1}}, "m_a", ""},
		{"rotated second key", Credentials{Authorization: []string{"Bearer " + a2}}, "m_a", ""},
		{"scheme any case", Credentials{Authorization: []string{"bearer " + b1}}, "m_b", ""},
		{"cert only", Credentials{VerifiedChains: leaf("spiffe://payments.example/merchant/m_c")}, "m_c", ""},
		{"cert and key agree", Credentials{Authorization: []string{"Bearer " + a1}, VerifiedChains: leaf("spiffe://td/merchant/m_a")}, "m_a", ""},
		{"cert with other uris", Credentials{VerifiedChains: leaf("https://example.com/x", "spiffe://td/workload/w", "spiffe://td/merchant/m_c")}, "m_c", ""},
		{"none", Credentials{}, "", "no api key and no client certificate"},
		{"no scheme", Credentials{Authorization: []string{a1}}, "", "not \"Bearer"},
		{"basic scheme", Credentials{Authorization: []string{"Basic " + a1}}, "", "not \"Bearer"},
		{"malformed key", Credentials{Authorization: []string{"Bearer pk_live_short"}}, "", "api key is not"},
		{"unknown key", Credentials{Authorization: []string{"Bearer " + unknown}}, "", "unknown api key"},
		{"two values", Credentials{Authorization: []string{"Bearer " + a1, "Bearer " + b1}}, "", "2 authorization values"},
		{"cert and key disagree", Credentials{Authorization: []string{"Bearer " + b1}, VerifiedChains: leaf("spiffe://td/merchant/m_a")}, "", "different merchants"},
		{"cert without merchant", Credentials{VerifiedChains: leaf("spiffe://td/workload/w")}, "", "no spiffe"},
		{"cert with bad merchant", Credentials{VerifiedChains: leaf("spiffe://td/merchant/m%2Fa")}, "", "no spiffe"},
		{"cert naming two merchants", Credentials{VerifiedChains: leaf("spiffe://td/merchant/m_a", "spiffe://td/merchant/m_b")}, "", "two merchants"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := auth.Authenticate(tt.creds)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Authenticate() = %q, %v; want ErrUnauthenticated containing %q", got, err, tt.wantErr)
				}
				for _, k := range []string{a1, a2, b1, unknown} {
					if strings.Contains(err.Error(), k) {
						t.Errorf("error %q carries the key", err)
					}
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Authenticate() = %q, %v; want %q, nil", got, err, tt.want)
			}
		})
	}

	t.Run("certificates only", func(t *testing.T) {
		_, err := NewAuthenticator(nil).Authenticate(Credentials{Authorization: []string{"Bearer " + a1}})
		if !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("Authenticate() with no keys = %v, want ErrUnauthenticated", err)
		}
		_, err = NewAuthenticator(Static{}).Authenticate(Credentials{Authorization: []string{"Bearer " + a1}})
		if !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("Authenticate() with a nil keyring = %v, want ErrUnauthenticated", err)
		}
	})
	t.Run("dev key", func(t *testing.T) {
		got, err := NewAuthenticator(DevKeys()).Authenticate(Credentials{Authorization: []string{"Bearer " + DevKey}})
		if err != nil || got != DevMerchant {
			t.Errorf("Authenticate(DevKey) = %q, %v; want %q", got, err, DevMerchant)
		}
	})
}

// replace writes data beside path and renames it over path, as a Kubernetes
// Secret volume update does.
func replace(t *testing.T, path, data string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestKeyFileReloads(t *testing.T) {
	oldKey, newKey := mustKey(t, "live"), mustKey(t, "live")
	path := filepath.Join(t.TempDir(), "keys")
	replace(t, path, Line("m_a", oldKey))
	clk := testsupport.NewClock(time.Unix(1_800_000_000, 0))
	var reloads []int
	var failures []error
	var mu sync.Mutex
	f, err := LoadKeyFile(path, FileOptions{
		CheckInterval: time.Second,
		Now:           clk.Now,
		OnReload:      func(n int) { mu.Lock(); reloads = append(reloads, n); mu.Unlock() },
		OnError:       func(err error) { mu.Lock(); failures = append(failures, err); mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	auth := NewAuthenticator(f)
	who := func(key string) string {
		m, err := auth.Authenticate(Credentials{Authorization: []string{"Bearer " + key}})
		if err != nil {
			return "refused"
		}
		return m
	}

	steps := []struct {
		name      string
		write     string // "" leaves the file alone
		advance   time.Duration
		wantOld   string
		wantNew   string
		wantLoads int
		wantFails int
	}{
		{"loaded", "", 0, "m_a", "refused", 0, 0},
		{"rotation written, not yet due", Line("m_a", oldKey) + "\n" + Line("m_a", newKey), 500 * time.Millisecond, "m_a", "refused", 0, 0},
		{"rotation due", "", 600 * time.Millisecond, "m_a", "m_a", 1, 0},
		{"old key revoked", Line("m_a", newKey), time.Second, "refused", "m_a", 2, 0},
		{"broken file keeps the keys in force", "m_a sha256:nothex", time.Second, "refused", "m_a", 2, 1},
		{"unchanged file is not re-read", "", time.Second, "refused", "m_a", 2, 2},
		{"fixed file", Line("m_b", newKey), time.Second, "refused", "m_b", 3, 2},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.write != "" {
				replace(t, path, s.write)
			}
			clk.Advance(s.advance)
			if got := who(oldKey); got != s.wantOld {
				t.Errorf("old key: got %s, want %s", got, s.wantOld)
			}
			if got := who(newKey); got != s.wantNew {
				t.Errorf("new key: got %s, want %s", got, s.wantNew)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(reloads) != s.wantLoads {
				t.Errorf("reloads = %v, want %d", reloads, s.wantLoads)
			}
			// A broken file is reported once per change, and an unchanged
			// broken file again on each check, since it stays broken.
			if len(failures) != s.wantFails {
				t.Errorf("failures = %v, want %d", failures, s.wantFails)
			}
		})
	}

	t.Run("file removed keeps the keys in force", func(t *testing.T) {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Second)
		if got := who(newKey); got != "m_b" {
			t.Errorf("after removal: got %s, want m_b", got)
		}
	})
}

func TestLoadKeyFileRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("m_a sha256:zz\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{"missing": filepath.Join(dir, "none"), "malformed": bad} {
		t.Run(name, func(t *testing.T) {
			if _, err := LoadKeyFile(path, FileOptions{}); err == nil {
				t.Errorf("LoadKeyFile(%s) = nil error, want one", name)
			}
		})
	}
}
