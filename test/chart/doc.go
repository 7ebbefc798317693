// Package chart owns the render tests of the Helm chart in charts/payments: it renders the chart with the
// Helm Go SDK against a fake Kubernetes 1.34 and decodes every object strictly into k8s.io/api types.
// It is its own Go module so the service's go.mod carries no Helm or Kubernetes dependencies.
package chart
