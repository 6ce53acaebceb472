// na-libcni: a CNI client for the benchmark, built on libcni (the library
// containerd, CRI-O and Podman's CNI backend use), so ADD and DEL are
// timed as a runtime runs them: the list's plugins in order, results
// cached and handed to the next plugin, DEL in reverse.
//
// Usage: na-libcni -conf LIST -path DIR -cache DIR -netns PREFIX -n N
//
//	[-id PREFIX] [-port-base P] [-ops add,check,del]
//
// For each operation of -ops in turn, for i in 0..N, it runs that
// operation on container "IDi" (default ID "na-bench-") in namespace
// PREFIXi (with host port P+i published to its port 80/tcp and 53/udp,
// if -port-base is given), and prints one JSON object with each ADD's
// and DEL's latency in milliseconds and CHECK's errors. An ADD or DEL
// that fails ends it (exit 1). Built in GOPATH mode from Debian's
// golang-github-appc-cni-dev (no module proxy needed).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
)

type report struct {
	AddMs       []float64 `json:"add_ms"`
	DelMs       []float64 `json:"del_ms"`
	CheckErrors []string  `json:"check_errors"`
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "na-libcni: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	confPath := flag.String("conf", "", "the network configuration list")
	pluginDir := flag.String("path", "", "the plugin directory (CNI_PATH)")
	netnsPrefix := flag.String("netns", "", "namespace path prefix; container i uses PREFIXi")
	n := flag.Int("n", 1, "how many containers")
	portBase := flag.Int("port-base", 0, "container i publishes host port BASE+i to its port 80/tcp and 53/udp")
	ops := flag.String("ops", "add,check,del", "the operations, in order")
	idPrefix := flag.String("id", "na-bench-", "container ID prefix")
	cacheDir := flag.String("cache", "", "libcni's cache directory")
	flag.Parse()
	if *confPath == "" || *pluginDir == "" || *netnsPrefix == "" || *cacheDir == "" {
		fail("-conf, -path, -netns and -cache are required")
	}
	list, err := libcni.ConfListFromFile(*confPath)
	if err != nil {
		fail("reading %s: %v", *confPath, err)
	}
	cni := libcni.NewCNIConfigWithCacheDir([]string{*pluginDir}, *cacheDir, nil)
	rt := func(i int) *libcni.RuntimeConf {
		caps := map[string]interface{}{}
		if *portBase != 0 {
			caps["portMappings"] = []map[string]interface{}{
				{"hostPort": *portBase + i, "containerPort": 80, "protocol": "tcp"},
				{"hostPort": *portBase + i, "containerPort": 53, "protocol": "udp"},
			}
		}
		return &libcni.RuntimeConf{
			ContainerID:    *idPrefix + strconv.Itoa(i),
			NetNS:          *netnsPrefix + strconv.Itoa(i),
			IfName:         "eth0",
			CapabilityArgs: caps,
		}
	}
	ctx := context.Background()
	r := report{AddMs: []float64{}, DelMs: []float64{}, CheckErrors: []string{}}
	for _, op := range strings.Split(*ops, ",") {
		for i := 0; i < *n; i++ {
			start := time.Now()
			switch op {
			case "add":
				if _, err := cni.AddNetworkList(ctx, list, rt(i)); err != nil {
					fail("ADD %d: %v", i, err)
				}
				r.AddMs = append(r.AddMs, float64(time.Since(start).Microseconds())/1000)
			case "check":
				if err := cni.CheckNetworkList(ctx, list, rt(i)); err != nil {
					r.CheckErrors = append(r.CheckErrors, err.Error())
				}
			case "del":
				if err := cni.DelNetworkList(ctx, list, rt(i)); err != nil {
					fail("DEL %d: %v", i, err)
				}
				r.DelMs = append(r.DelMs, float64(time.Since(start).Microseconds())/1000)
			default:
				fail("-ops: unknown operation %q", op)
			}
		}
	}
	out, _ := json.Marshal(r)
	fmt.Println(string(out))
}
