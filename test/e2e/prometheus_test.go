package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// prometheusBinary finds Debian's prometheus. Without it the test skips
// only outside CI: `make test-prometheus` (which CI runs) installs it.
func prometheusBinary(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err == nil {
		return bin
	}
	if os.Getenv("CI") == "" {
		t.Skip("prometheus is not installed; `make test-prometheus` installs Debian's package and runs this test")
	}
	t.Fatal("prometheus is not installed but CI is set: run `make test-prometheus`, which installs it")
	return ""
}

// TestPrometheusScrapesCluster runs a real Prometheus server on loopback
// against a three-process cluster (two scraped on -address through the
// shared port, one on its --metrics-address) and asks it, through its HTTP
// API, how many leaders there are.
func TestPrometheusScrapesCluster(t *testing.T) {
	prom := prometheusBinary(t)
	metricsAddr := freeAddr(t)
	c := startProcClusterWith(t, func(i int) []string {
		if i == 2 {
			return []string{"--metrics-address=" + metricsAddr}
		}
		return nil
	})
	targets := []string{c.addrs[0], c.addrs[1], metricsAddr}

	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: kvdb
    static_configs:
      - targets: ['%s']
`, strings.Join(targets, "', '"))
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	listen := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, prom,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+listen,
		"--log.level=warn")
	logs := &lockedWriter{w: &bytes.Buffer{}}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start prometheus: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		<-exited
	})

	// Every target up, three kvdb_server_is_leader series, and their sum 1.
	queries := map[string]string{
		`count(up{job="kvdb"} == 1)`:         "3",
		`count(kvdb_server_is_leader)`:       "3",
		`sum(kvdb_server_is_leader)`:         "1",
		`count(kvdb_server_has_leader == 1)`: "3",
	}
	client := &http.Client{Timeout: 2 * time.Second}
	got := map[string]string{}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("prometheus exited: %v\n%s", err, logs)
		default:
		}
		ok := true
		for q, want := range queries {
			v, err := promQuery(client, listen, q)
			got[q] = v
			if err != nil || v != want {
				ok = false
			}
		}
		if ok {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("within 60s Prometheus answered %v, want %v\nprometheus log:\n%s", got, queries, logs)
}

// promQuery runs an instant query and returns the single sample's value
// ("" when the result is empty).
func promQuery(client *http.Client, addr, q string) (string, error) {
	resp, err := client.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return "", err
	}
	if body.Status != "success" {
		return "", fmt.Errorf("query %s: %s", q, body.Error)
	}
	if len(body.Data.Result) != 1 {
		return "", nil
	}
	s, _ := body.Data.Result[0].Value[1].(string)
	return s, nil
}
