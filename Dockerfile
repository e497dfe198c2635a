# Container image for the Triggers API.
#
#   docker build -t triggers-api .
#   docker run --rm -e DATABASE_URL=... -e REDIS_URL=... -p 8080:8080 triggers-api
#
# The image runs `triggers-api serve` by default; `migrate` (see
# docker-compose.yml) applies the database migrations and exits.

# ---- build ---------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /app

# sqlx macros must not try to reach a database at build time.
ENV SQLX_OFFLINE=true

# Build the dependencies alone first, against stub sources, so that this
# (slow) layer is reused for as long as Cargo.toml and Cargo.lock do not change.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src

# Now the real sources. Remove the artifacts of the stub crate: COPY keeps the
# original modification times, which can be older than the stub build, and
# cargo would then consider the stub binary up to date.
COPY . .
RUN rm -rf target/release/.fingerprint/triggers-api-* \
           target/release/deps/triggers_api-* \
           target/release/deps/libtriggers_api-* \
           target/release/triggers-api \
    && cargo build --release --locked --bin triggers-api

# ---- runtime -------------------------------------------------------------
FROM debian:bookworm-slim

# ca-certificates for TLS connections to managed Redis/PostgreSQL.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# Fixed, unprivileged uid/gid so volume permissions are predictable.
RUN groupadd --system --gid 10001 triggers \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin triggers

WORKDIR /app
COPY --from=builder /app/target/release/triggers-api /usr/local/bin/triggers-api
# Shipped alongside the binary as well, for tooling that reads them at runtime.
COPY --from=builder /app/migrations /app/migrations

USER 10001:10001
ENV TRIGGERS_LISTEN=0.0.0.0:8080
EXPOSE 8080

ENTRYPOINT ["triggers-api"]
CMD ["serve"]
