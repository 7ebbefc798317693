package cluster

import (
	"os"
	"path/filepath"
	"testing"
)

// removeHostPathPVs deletes only below hostPathBase, whatever the record says.
func TestRemoveHostPathPVsStaysBelowBase(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "precious")
	if err := os.WriteFile(outside, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	record := filepath.Join(t.TempDir(), "hostpath-pvs")
	lines := outside + "\n" + hostPathBase + "../etc\n" + hostPathBase + "\n"
	if err := os.WriteFile(record, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	if errs := removeHostPathPVs(record); len(errs) != 0 {
		t.Fatalf("errors: %v", errs)
	}
	if _, err := os.Stat(outside); err != nil {
		t.Fatalf("a path outside %s was removed: %v", hostPathBase, err)
	}
}
