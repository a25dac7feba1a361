# berqenas: build, then a slim runtime (docs/deploy.md#container-image).
#
#   docker build -t berqenas .
#   docker run --read-only --tmpfs /tmp -v berqenas-data:/var/lib/berqenas \
#     -e BERQENAS_DATABASE_URL_FILE=/run/secrets/database-url ... berqenas
#
# PG_MAJOR must be the PostgreSQL server's major version: pg_dump and pg_restore refuse
# a newer server than themselves. Debian 12 ships 15; other majors need the PGDG
# repository (see docs/deploy.md).
ARG PG_MAJOR=15

FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, so a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && for b in onboarding migrate backup audit_chain data_api; do echo 'fn main() {}' > benches/$b.rs; done \
 && cargo fetch --locked
COPY src src
COPY benches benches
COPY migrations migrations
COPY templates templates
RUN cargo build --release --locked --bin berqenas \
 && install -m 0755 target/release/berqenas /usr/local/bin/berqenas

FROM debian:bookworm-slim AS runtime
ARG PG_MAJOR
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      "postgresql-client-${PG_MAJOR}" ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 berqenas \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/berqenas --shell /usr/sbin/nologin berqenas \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/berqenas
COPY --from=build /usr/local/bin/berqenas /usr/local/bin/berqenas
COPY deploy/docker/entrypoint.sh /usr/local/bin/berqenas-entrypoint
# Configuration from the environment only; secrets from the environment or from files
# (BERQENAS_<NAME>_FILE, read by the entrypoint). The data directory holds the serve
# lock and nothing that must survive: give the admin token and secret key explicitly.
ENV PATH="/usr/lib/postgresql/${PG_MAJOR}/bin:${PATH}" \
    BERQENAS_DATA_DIR=/var/lib/berqenas \
    BERQENAS_LISTEN=0.0.0.0:8080 \
    RUST_LOG=info
USER 10001:10001
WORKDIR /var/lib/berqenas
VOLUME ["/var/lib/berqenas"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/health || exit 1
ENTRYPOINT ["/usr/local/bin/berqenas-entrypoint"]
CMD ["serve"]
