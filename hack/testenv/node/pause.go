// pause is the sandbox ("pause") image of the real test node, and a tiny
// workload for tests that need a container without a shell.
//
// It prints its arguments as one line (if any), waits for SIGTERM or SIGINT,
// reports the signal on stdout and, when $PAUSE_SIGNAL_FILE is set, in that
// file (so a test can see that a graceful delete really sent SIGTERM), and
// exits 0. "pause echo WORDS..." prints WORDS and exits at once (for exec).
// Built with CGO_ENABLED=0 into a FROM-scratch image by node.sh.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "echo" {
		fmt.Println(strings.Join(os.Args[2:], " "))
		return
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	if len(os.Args) > 1 {
		fmt.Println(strings.Join(os.Args[1:], " "))
	}
	sig := <-sigs
	line := fmt.Sprintf("pause: got %s, exiting", unixName(sig))
	fmt.Println(line)
	if path := os.Getenv("PAUSE_SIGNAL_FILE"); path != "" {
		_ = os.WriteFile(path, []byte(line+"\n"), 0o644)
	}
}

func unixName(sig os.Signal) string {
	if sig == syscall.SIGTERM {
		return "SIGTERM"
	}
	return "SIGINT"
}
