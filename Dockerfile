# ringlb in a container: the static binary and the example configuration, and
# nothing else (no shell, no libc, no package manager). Nothing is built in
# here: scripts/build-image.sh builds and strips the binary, checks it, then
# builds this image.
FROM scratch
COPY target/image/ringlb /ringlb
COPY config/ringlb.toml /etc/ringlb/ringlb.toml
# nobody:nogroup. Listening on ports under 1024 needs --cap-add NET_BIND_SERVICE.
USER 65534:65534
# The proxy; the admin listener (the example keeps it on the container's own
# loopback: point admin.listen elsewhere, with a token, to reach it).
EXPOSE 8080 9900
ENTRYPOINT ["/ringlb", "run", "-c"]
CMD ["/etc/ringlb/ringlb.toml"]
