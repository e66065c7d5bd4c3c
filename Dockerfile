# Herald's container image, in three stages (docs/running.md, "Containers and systemd"):
#   1. the dashboard (web/dist) with Node.js, 2. the `herald` binary with Rust, 3. a small
#   Debian runtime holding both. One image runs every role: the command picks it, e.g.
#   `serve --role api`, `serve --role worker`, `sim` (the WuzAPI simulator), `migrate`.
#
#   docker build -t herald .
#
# These files are not run on the project's own machines (no container runtime there); they are
# kept in step with scripts/run.sh's settings and checked by the deployment-files test.

FROM node:22-bookworm-slim AS web
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN npm ci
COPY web/ ./
RUN npm run build

FROM rust:1.85-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p herald-api --bin herald

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /srv/herald --create-home herald
WORKDIR /srv/herald
COPY --from=build /src/target/release/herald /usr/local/bin/herald
COPY --from=web /src/web/dist /srv/herald/web/dist
USER herald
# the API (HERALD_LISTEN) and a worker's probes (HERALD_WORKER_LISTEN); inside a container
# they must bind every interface, not the loopback defaults
ENV HERALD_LISTEN=0.0.0.0:8080 \
    HERALD_WORKER_LISTEN=0.0.0.0:8090 \
    HERALD_WEB_DIR=/srv/herald/web/dist
EXPOSE 8080 8090
# SIGTERM drains (calls in flight finish and are recorded) and exits within 10 s
STOPSIGNAL SIGTERM
ENTRYPOINT ["herald"]
CMD ["serve"]
