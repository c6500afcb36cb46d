// Command prepare builds the real-Matomo template once before `go test`
// runs, so that the test packages share it and its cost shows on its own
// line (make real-matomo). Without PHP or the release it says so and exits
// 0, except under CI=true.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/matomod/matomod/internal/realmatomo"
)

func main() {
	if why := realmatomo.Missing(); why != "" {
		if os.Getenv("CI") == "true" {
			fmt.Fprintln(os.Stderr, "real-matomo:", why)
			os.Exit(1)
		}
		fmt.Println("real-matomo: skipped:", why)
		return
	}
	start := time.Now()
	t, err := realmatomo.Get(context.Background(), func(f string, a ...any) { fmt.Printf(f+"\n", a...) })
	if err != nil {
		fmt.Fprintln(os.Stderr, "real-matomo:", err)
		os.Exit(1)
	}
	fmt.Printf("real-matomo: template %s ready (%d sites, %d site-days with visits; %.0f s here, built in %.0f s)\n",
		t.Dir, len(t.Manifest.Sites), len(t.Manifest.Visits), time.Since(start).Seconds(), t.Manifest.BuildSeconds)
}
