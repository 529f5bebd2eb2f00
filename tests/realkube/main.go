// Command realkube is the real Kubernetes control plane that cdkube's tests run against: one binary holding
// etcd, kube-apiserver and kube-controller-manager, built from their published Go modules. The first
// argument picks the component; the rest are that component's own flags.
//
//	realkube etcd --data-dir=...
//	realkube kube-apiserver --etcd-servers=...
//	realkube kube-controller-manager --kubeconfig=...
//
// One binary rather than three because the two Kubernetes components share almost all their code: one link
// step and one file in target/ instead of three.
package main

import (
	"fmt"
	"os"
	_ "time/tzdata"

	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: realkube etcd|kube-apiserver|kube-controller-manager [flags]")
		os.Exit(2)
	}
	component, args := os.Args[1], os.Args[2:]
	switch component {
	case "etcd":
		// etcdmain reads its flags from the slice it is given, program name first.
		etcdmain.Main(append([]string{"etcd"}, args...))
	case "kube-apiserver":
		command := apiserver.NewAPIServerCommand()
		command.SetArgs(args)
		os.Exit(cli.Run(command))
	case "kube-controller-manager":
		command := controllermanager.NewControllerManagerCommand()
		command.SetArgs(args)
		os.Exit(cli.Run(command))
	default:
		fmt.Fprintf(os.Stderr, "realkube: unknown component %q\n", component)
		os.Exit(2)
	}
}
