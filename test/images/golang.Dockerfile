# A stand-in for golang:<version>-bookworm: Debian minbase plus the Go
# toolchain of the machine that builds it (test/images/build.sh).
ARG BASE
FROM ${BASE}
ADD go.tar /usr/local/
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV GOPATH=/go PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /go
