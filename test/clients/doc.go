// Package clients proves the gRPC contract in api/proto from outside Go: it
// starts a real kvdb-server on loopback and drives it with the generated
// Python client (examples/python and test/clients/python) and with grpcurl
// through server reflection alone, including every grpcurl line of
// docs/clients.md.
//
// The tests carry the clients build tag and run with make test-clients,
// which installs what they need (Debian's python3-grpcio and
// python3-protobuf, grpcurl into .tools/bin). Outside CI they skip when a
// tool is missing; with CI set they fail instead.
package clients
