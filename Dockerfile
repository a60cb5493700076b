# KVDB image: statically linked binaries on an empty base, so it builds
# without pulling anything. Build it with `make docker-build`, which puts
# the binaries in build/docker first.
FROM scratch
COPY build/docker/kvdb-server /usr/local/bin/kvdb-server
COPY build/docker/kvdbctl /usr/local/bin/kvdbctl
# The README's `docker exec -it kvdb-node1 ./client -address localhost:8080`.
COPY build/docker/kvdbctl /client
ENV PATH=/usr/local/bin
WORKDIR /
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/kvdb-server"]
CMD ["-address=:8080", "-data-dir=/data"]
