// Command binsize is behind `make size`: it says what each module adds to the
// payments-svc binary, so the image's size budget is set from a measurement
// rather than a guess. It builds ./cmd/server twice, stripped as the image
// ships it and with symbols for attribution, sums the sizes its ELF
// symbol table gives per module, and prints a Markdown table. Symbol sizes cover code and
// data; the remainder (the pclntab, type metadata the linker shares, section
// padding) is shown as one row, so the table adds up to the stripped size.
package main

import (
	"bytes"
	"cmp"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "binsize:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, w io.Writer) error {
	dir, err := os.MkdirTemp("", "binsize-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	stripped, full := filepath.Join(dir, "stripped"), filepath.Join(dir, "full")
	if err := goCmd(ctx, nil, "build", "-trimpath", "-ldflags", "-s -w", "-o", stripped, "./cmd/server"); err != nil {
		return err
	}
	if err := goCmd(ctx, nil, "build", "-trimpath", "-o", full, "./cmd/server"); err != nil {
		return err
	}
	fi, err := os.Stat(stripped)
	if err != nil {
		return err
	}

	modules, err := packageModules(ctx)
	if err != nil {
		return err
	}
	f, err := elf.Open(full)
	if err != nil {
		return err
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		return err
	}
	sizes := map[string]int64{}
	var attributed int64
	for _, sym := range syms {
		// Only symbols that take room in the file: not .bss and friends,
		// which are zeroed at load time however large they are.
		if sym.Size == 0 || int(sym.Section) >= len(f.Sections) || sym.Section == elf.SHN_UNDEF ||
			f.Sections[sym.Section].Type == elf.SHT_NOBITS {
			continue
		}
		mod := moduleOf(sym.Name, modules)
		sizes[mod] += int64(sym.Size)
		attributed += int64(sym.Size)
	}

	type row struct {
		module string
		size   int64
	}
	rows := make([]row, 0, len(sizes)+1)
	for m, s := range sizes {
		rows = append(rows, row{m, s})
	}
	slices.SortFunc(rows, func(a, b row) int { return cmp.Compare(b.size, a.size) })
	rows = append(rows, row{"(pclntab, shared metadata, padding: not attributed)", fi.Size() - attributed})

	fmt.Fprintf(w, "stripped binary (-s -w, as in the image): %.2f MiB (%d bytes)\n\n", mib(fi.Size()), fi.Size())
	// The pclntab and metadata grow with the code they describe, so a
	// module's real cost is about its symbols scaled by stripped/attributed.
	scale := float64(fi.Size()) / float64(attributed)
	fmt.Fprintln(w, "| module | symbols MiB | with its share of pclntab, MiB | share |")
	fmt.Fprintln(w, "|---|---:|---:|---:|")
	for _, r := range rows[:len(rows)-1] {
		fmt.Fprintf(w, "| %s | %.2f | %.2f | %.1f%% |\n", r.module, mib(r.size), mib(r.size)*scale, 100*float64(r.size)/float64(attributed))
	}
	last := rows[len(rows)-1]
	fmt.Fprintf(w, "| %s | %.2f | | |\n", last.module, mib(last.size))
	return nil
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// packageModules maps every package linked into the server to its module;
// packages of the standard library map to "std".
func packageModules(ctx context.Context) (map[string]string, error) {
	var out bytes.Buffer
	if err := goCmd(ctx, &out, "list", "-deps", "-json=ImportPath,Standard,Module", "./cmd/server"); err != nil {
		return nil, err
	}
	m := map[string]string{}
	dec := json.NewDecoder(&out)
	for {
		var p struct {
			ImportPath string
			Standard   bool
			Module     *struct{ Path string }
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			return m, nil
		} else if err != nil {
			return nil, err
		}
		switch {
		case p.Standard:
			m[p.ImportPath] = "std (Go runtime and standard library)"
		case p.Module != nil:
			m[p.ImportPath] = p.Module.Path
		}
	}
}

// moduleOf attributes a symbol to the module of the longest package path it
// starts with. Type descriptors and closures name their package after a
// prefix ("type:*", "go:"), which is stripped first.
func moduleOf(sym string, modules map[string]string) string {
	for _, p := range []string{"type:*", "type:", "go:itab.*", "go:itab.", "go:"} {
		sym = strings.TrimPrefix(sym, p)
	}
	best := ""
	for pkg := range modules {
		if len(pkg) > len(best) && strings.HasPrefix(sym, pkg) &&
			(len(sym) == len(pkg) || strings.ContainsRune("./", rune(sym[len(pkg)]))) {
			best = pkg
		}
	}
	if best == "" {
		return "(runtime-generated symbols)"
	}
	return modules[best]
}

func goCmd(ctx context.Context, stdout io.Writer, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	return nil
}
