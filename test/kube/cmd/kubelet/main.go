// Command kubelet is the upstream node agent, built from the pinned module so
// the cluster harness (package node) can join a real node to the control plane.
package main

import (
	"context"
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"            // JSON log format registration
	_ "k8s.io/component-base/metrics/prometheus/restclient" // client-go metrics registration
	_ "k8s.io/component-base/metrics/prometheus/version"    // version metric registration
	"k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	command := app.NewKubeletCommand(context.Background())
	os.Exit(cli.Run(command))
}
