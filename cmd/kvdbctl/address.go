package main

import (
	"fmt"
	"net"
	"strings"
)

// defaultPort is the port an address without one gets: the server's
// default -address is :8080.
const defaultPort = "8080"

// normalizeAddress makes a user-typed address dialable: ":8080" becomes
// localhost:8080 and a host without a port gets 8080, instead of the port
// 443 gRPC's resolver would pick for a bare host.
func normalizeAddress(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("empty address")
	}
	if host, port, err := net.SplitHostPort(s); err == nil {
		if host == "" {
			host = "localhost"
		}
		if port == "" {
			port = defaultPort
		}
		return net.JoinHostPort(host, port), nil
	}
	host := strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	if ip := net.ParseIP(host); ip != nil {
		return net.JoinHostPort(host, defaultPort), nil // an IPv6 address without a port
	}
	if strings.ContainsAny(s, ":[]/ ") {
		return "", fmt.Errorf("address %q: want host:port", s)
	}
	return net.JoinHostPort(s, defaultPort), nil
}

// parseEndpoints splits a comma-separated list of addresses and normalizes
// each one.
func parseEndpoints(list []string) ([]string, error) {
	var out []string
	for _, item := range list {
		for ep := range strings.SplitSeq(item, ",") {
			if strings.TrimSpace(ep) == "" {
				continue
			}
			addr, err := normalizeAddress(ep)
			if err != nil {
				return nil, err
			}
			out = append(out, addr)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no address given")
	}
	return out, nil
}
