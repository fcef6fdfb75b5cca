package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/knit-cni/knit/pkg/cni"
)

// serve runs handler on a unix socket like the daemon does and returns a
// client for it.
func serve(t *testing.T, handler http.HandlerFunc) *Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "d.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: handler}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return NewClient(sock)
}

func TestClientAnswers(t *testing.T) {
	big := strings.Repeat("x", 100_000) // the server chunks this over HTTP/1.1, not over 1.0
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			if r.Method != MethodPost || r.Header.Get("Content-Type") != "application/json" {
				http.Error(w, "bad request line", 400)
				return
			}
			b, _ := io.ReadAll(r.Body)
			w.Write(b)
		case "/big":
			json.NewEncoder(w).Encode(map[string]string{"v": big})
		case "/none":
			w.WriteHeader(http.StatusNoContent)
		case "/cnierr":
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(cni.NewError(cni.ErrUnknownContainer, "no lease", "for c1"))
		default:
			http.Error(w, "broken", http.StatusInternalServerError)
		}
	})
	ctx := context.Background()
	var got Key
	if err := c.Do(ctx, MethodPost, "/echo", Key{ContainerID: "c1", Network: "n", IfName: "eth0"}, &got); err != nil {
		t.Fatal(err)
	}
	if got.ContainerID != "c1" || got.IfName != "eth0" {
		t.Errorf("echo gave %+v", got)
	}
	var m map[string]string
	if err := c.Do(ctx, MethodGet, "/big", nil, &m); err != nil || m["v"] != big {
		t.Errorf("big answer: err %v, %d bytes", err, len(m["v"]))
	}
	if err := c.Do(ctx, MethodGet, "/none", nil, &m); err != nil {
		t.Errorf("204: %v", err)
	}
	var ce *cni.Error
	if err := c.Do(ctx, MethodPost, "/cnierr", nil, nil); !errors.As(err, &ce) || ce.Code != cni.ErrUnknownContainer || ce.Details != "for c1" {
		t.Errorf("daemon's CNI error came back as %v", err)
	}
	err := c.Do(ctx, MethodGet, "/other", nil, nil)
	if !errors.As(err, &ce) || ce.Code != cni.ErrInternal || !strings.Contains(err.Error(), "500 Internal Server Error") || !strings.Contains(err.Error(), "broken") {
		t.Errorf("plain error answer came back as %v", err)
	}
}

func TestClientNotRunning(t *testing.T) {
	c := NewClient(filepath.Join(t.TempDir(), "absent.sock"))
	var nr *NotRunning
	if err := c.Do(context.Background(), MethodGet, "/v1/status", nil, nil); !errors.As(err, &nr) {
		t.Errorf("no daemon gave %v, want *NotRunning", err)
	}
}

func TestClientContextDeadline(t *testing.T) {
	release := make(chan struct{})
	c := serve(t, func(w http.ResponseWriter, r *http.Request) { <-release })
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Do(ctx, MethodGet, "/slow", nil, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("slow daemon gave %v, want the deadline", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("took %s to give up", time.Since(start))
	}
}
