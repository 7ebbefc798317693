package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/payments-svc/payments-svc/test/kube/controlplane"
)

// hostPathBase is where the controller manager's hostPath provisioner
// creates one directory per claim (k8s.io/kubernetes pkg/volume/hostpath).
const hostPathBase = "/tmp/hostpath_pv/"

// pvWatcher opens up each directory the hostPath provisioner creates and
// records it for cleanup. The provisioner creates them 0750 root:root, and a
// hostPath volume gets no fsGroup ownership change, so a non-root pod (the
// chart's Redis runs as uid 999) could not write its claim. Mode 0777 is what
// rancher's local-path-provisioner gives its directories too.
type pvWatcher struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func watchHostPathPVs(ctx context.Context, cp *controlplane.ControlPlane, record string) *pvWatcher {
	// It lives until stop, not until the start context ends.
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w := &pvWatcher{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		seen := map[string]bool{}
		for {
			var list struct {
				Items []struct {
					Spec struct {
						HostPath *struct{ Path string } `json:"hostPath"`
					}
				}
			}
			if err := cp.Do(ctx, http.MethodGet, "/api/v1/persistentvolumes", nil, &list); err == nil {
				for _, pv := range list.Items {
					if pv.Spec.HostPath == nil || !strings.HasPrefix(pv.Spec.HostPath.Path, hostPathBase) {
						continue
					}
					p := filepath.Clean(pv.Spec.HostPath.Path)
					if !seen[p] {
						if err := appendLine(record, p); err == nil {
							seen[p] = true
						}
					}
					if fi, err := os.Stat(p); err == nil && fi.Mode().Perm() != 0o777 {
						_ = os.Chmod(p, 0o777) //nolint:gosec // see pvWatcher
					}
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *pvWatcher) stop() {
	w.cancel()
	<-w.done
}

func appendLine(path, line string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600) //nolint:gosec // the cluster's own state file
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(f, line)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// removeHostPathPVs deletes the provisioned directories a cluster recorded,
// never anything outside hostPathBase.
func removeHostPathPVs(record string) []error {
	b, err := os.ReadFile(record) //nolint:gosec // the cluster's own record
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return []error{err}
	}
	var errs []error
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	slices.Sort(lines)
	for _, p := range slices.Compact(lines) {
		p = filepath.Clean(p)
		if !strings.HasPrefix(p, hostPathBase) || p == filepath.Clean(hostPathBase) {
			continue
		}
		if err := os.RemoveAll(p); err != nil { //nolint:gosec // only below hostPathBase, checked above
			errs = append(errs, err)
		}
	}
	// The provisioner's base directory goes too, unless something else is in it.
	_ = syscall.Rmdir(filepath.Clean(hostPathBase))
	return errs
}
