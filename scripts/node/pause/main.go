// The pod sandbox process: holds a pod's namespaces open and does nothing else. It sleeps until SIGINT or
// SIGTERM and, as PID 1 of a pod that shares its PID namespace, reaps orphaned children. Written here (not
// taken from the upstream pause image) so the node needs no registry: build-node.sh compiles it statically.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-v" {
		os.Stdout.WriteString("synapse-workers pause\n")
		return
	}
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range signals {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
