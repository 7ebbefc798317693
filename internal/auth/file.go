package auth

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// FileOptions tunes how a KeyFile follows its file.
type FileOptions struct {
	// CheckInterval is the least time between two looks at the file; 0
	// means 5s. A key removed from the file stops working within it.
	CheckInterval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// OnReload, if set, is told the number of keys after each reload.
	OnReload func(keys int)
	// OnError, if set, is told why a changed file was not taken; the keys
	// loaded before stay in force.
	OnError func(error)
}

// KeyFile is a Keyring read from a file and re-read when the file changes,
// so keys are added, rotated and revoked without a restart. Kubernetes
// updates a mounted Secret by swapping a symlink, which os.Stat follows.
type KeyFile struct {
	path string
	opts FileOptions

	ring    atomic.Pointer[Keyring]
	nextDue atomic.Int64 // unix ns of the next look at the file
	mu      sync.Mutex   // one reload at a time
	seen    fileStamp
}

// fileStamp is what tells a changed file from the one loaded.
type fileStamp struct {
	mod  time.Time
	size int64
	sys  any
}

func stampOf(fi os.FileInfo) fileStamp {
	return fileStamp{mod: fi.ModTime(), size: fi.Size(), sys: inode(fi)}
}

// LoadKeyFile reads path once; a missing or malformed file is an error, so
// the server refuses to start rather than refusing every caller.
func LoadKeyFile(path string, opts FileOptions) (*KeyFile, error) {
	if opts.CheckInterval <= 0 {
		opts.CheckInterval = 5 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	f := &KeyFile{path: path, opts: opts}
	ring, stamp, err := f.read()
	if err != nil {
		return nil, err
	}
	f.ring.Store(ring)
	f.seen = stamp
	f.nextDue.Store(opts.Now().Add(opts.CheckInterval).UnixNano())
	return f, nil
}

func (f *KeyFile) read() (*Keyring, fileStamp, error) {
	fi, err := os.Stat(f.path)
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("keys file: %w", err)
	}
	data, err := os.ReadFile(f.path)
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("keys file: %w", err)
	}
	ring, err := ParseKeys(data)
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("keys file %s: %w", f.path, err)
	}
	return ring, stampOf(fi), nil
}

// Keyring returns the keys in force, first re-reading the file when the
// check interval has passed and the file has changed. Only one caller pays
// for the check; the others go on with the keys in force.
func (f *KeyFile) Keyring() *Keyring {
	now := f.opts.Now()
	if now.UnixNano() >= f.nextDue.Load() && f.mu.TryLock() {
		f.check(now)
		f.mu.Unlock()
	}
	return f.ring.Load()
}

func (f *KeyFile) check(now time.Time) {
	f.nextDue.Store(now.Add(f.opts.CheckInterval).UnixNano())
	fi, err := os.Stat(f.path)
	if err != nil {
		f.fail(fmt.Errorf("keys file: %w", err))
		return
	}
	if stampOf(fi) == f.seen {
		return
	}
	ring, stamp, err := f.read()
	if err != nil {
		f.fail(err)
		return
	}
	f.ring.Store(ring)
	f.seen = stamp
	if f.opts.OnReload != nil {
		f.opts.OnReload(ring.Len())
	}
}

func (f *KeyFile) fail(err error) {
	if f.opts.OnError != nil {
		f.opts.OnError(err)
	}
}
