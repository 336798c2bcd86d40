// Package localcluster runs the embedded default cluster on this machine: it
// builds and caches the pinned binaries (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, the agent-sandbox controller and
// router), starts them with a kubeconfig and certificates of their own, adds
// the default StorageClass with its directory provisioner and the process
// node whose pods are sandboxes (internal/processnode), serves Gateways of
// class sandboxtest-local (a host loopback address each, and an HTTP
// listener per port that proxies to their HTTPRoutes' pods), and stops
// everything it started.
//
// Start runs a cluster in the calling process; Serve and Up run one in the
// background for `sandboxtest-setup local`. Linux only, and never imported
// by a package users import: sandboxtest.Main runs it as a child process.
package localcluster
