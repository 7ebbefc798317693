# A stand-in for the official Redis image, from Debian's packages. The redis
# user is uid 999, gid 1000, as in the official alpine image the chart and
# compose are written for, and /data belongs to it.
ARG BASE
FROM ${BASE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server redis-tools >/dev/null \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd -g 1000 -o redisdata && usermod -u 999 -g 1000 redis \
 && mkdir -p /data && chown 999:1000 /data
WORKDIR /data
USER 999:1000
EXPOSE 6379
ENTRYPOINT ["redis-server"]
