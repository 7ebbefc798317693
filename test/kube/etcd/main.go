// Command etcd runs the etcd server from the pinned go.etcd.io/etcd/server/v3
// module. `go install` of upstream etcd fails on its relative replace
// directives, so this tiny main stands in for upstream's server/main.go.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
