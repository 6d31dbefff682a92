// Command hello is the tiny HTTP server of the Kubernetes tests' image: it
// answers who served the request (the pod's name and IP, from the downward API
// or the hostname), /burn spends CPU for the given milliseconds so that a
// HorizontalPodAutoscaler has a CPU metric to read, and /resolve?name= looks a
// name up as the pod sees it (the cluster's DNS), and /connect?addr=ip:port
// says whether the pod can open a TCP connection there (the tests check what a
// pod cannot reach). It has no dependencies, so
// the image is one static file.
package main

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	host, _ := os.Hostname()
	addr := os.Getenv("LISTEN")
	if addr == "" {
		addr = ":8080"
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{
			"pod": os.Getenv("POD_NAME"), "ip": os.Getenv("POD_IP"), "hostname": host,
		})
	})
	http.HandleFunc("/burn", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		until := time.Now().Add(time.Duration(min(ms, 10000)) * time.Millisecond)
		n := 0
		for time.Now().Before(until) {
			n++
		}
		w.Write([]byte(strconv.Itoa(n) + "\n"))
	})
	http.HandleFunc("/resolve", func(w http.ResponseWriter, r *http.Request) {
		addrs, err := net.LookupHost(r.URL.Query().Get("name"))
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
			return
		}
		json.NewEncoder(w).Encode(map[string][]string{"addresses": addrs})
	})
	http.HandleFunc("/connect", func(w http.ResponseWriter, r *http.Request) {
		conn, err := net.DialTimeout("tcp", r.URL.Query().Get("addr"), 2*time.Second)
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			json.NewEncoder(w).Encode(map[string]any{"connected": false, "error": err.Error()})
			return
		}
		conn.Close()
		json.NewEncoder(w).Encode(map[string]any{"connected": true})
	})
	server := &http.Server{Addr: addr}
	go func() {
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
		<-stop
		server.Close()
	}()
	if err := server.ListenAndServe(); err != http.ErrServerClosed {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
}
