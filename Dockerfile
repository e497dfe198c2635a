# Container image for the Triggers API.
#
# The build needs BuildKit (its cache mounts, `RUN --mount`): Docker 23+
# uses it by default, older Docker needs DOCKER_BUILDKIT=1 (or `docker
# buildx build`); the legacy builder fails with "the --mount option requires
# BuildKit". Podman and Buildah understand it too.
#
#   DOCKER_BUILDKIT=1 docker build -t triggers-api \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" .
#   docker run --rm -e DATABASE_URL=... -e REDIS_URL=... \
#     -e TRIGGERS_SECRET_KEYS="$(docker run --rm triggers-api new-secret-key)" \
#     -p 8080:8080 triggers-api serve --role api
#
# Production mode (the default) refuses to start without TRIGGERS_SECRET_KEYS,
# which seals webhook secrets: keep the generated key, every replica needs the
# same one (TRIGGERS_ENV=development runs without it, for a laptop only).
#
# The binary is the entrypoint: `serve --role api|worker|all` runs the
# service, `migrate` applies the database migrations and exits. It runs as
# uid/gid 10001, the ids the Helm chart and the kustomize manifests assume
# (runAsUser: 10001 with runAsNonRoot). A global ARG (before the first FROM)
# is only seen by FROM lines: a stage that uses one declares it again.

ARG RUST_VERSION=1
ARG DEBIAN_RELEASE=bookworm

# ---- build ---------------------------------------------------------------
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
WORKDIR /app

# sqlx macros must not try to reach a database at build time.
ENV SQLX_OFFLINE=true \
    CARGO_TERM_COLOR=never

# Build the dependencies alone first, against stub sources, so that this
# (slow) layer is reused for as long as Cargo.toml and Cargo.lock do not
# change. The registry cache mount keeps downloaded crates across builds
# even when the layer is rebuilt.
COPY Cargo.toml Cargo.lock ./
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src

# Now the real sources. Remove the artifacts of the stub crate: COPY keeps the
# original modification times, which can be older than the stub build, and
# cargo would then consider the stub binary up to date. build.rs records the
# commit for triggers_build_info from GIT_COMMIT (the context has no .git):
# the GIT_COMMIT build argument, else REVISION, else "unknown".
ARG REVISION=unknown
ARG GIT_COMMIT=${REVISION}
COPY build.rs ./
COPY src ./src
COPY migrations ./migrations
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    rm -rf target/release/.fingerprint/triggers-api-* \
           target/release/deps/triggers_api-* \
           target/release/deps/libtriggers_api-* \
           target/release/triggers-api \
    && GIT_COMMIT="${GIT_COMMIT}" cargo build --release --locked --bin triggers-api \
    && strip target/release/triggers-api

# ---- runtime -------------------------------------------------------------
# Debian slim rather than distroless: the Kubernetes preStop hook runs
# `sleep` from the image (the native sleep action needs Kubernetes 1.30+),
# and glibc matches the builder's.
FROM debian:${DEBIAN_RELEASE}-slim
ARG DEBIAN_RELEASE

# ca-certificates for TLS to managed Redis/PostgreSQL and to https webhooks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# Fixed, unprivileged uid/gid so volume permissions are predictable.
RUN groupadd --system --gid 10001 triggers \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin triggers

# After every RUN: these change with each build, and a RUN below them would
# run again (apt-get included) whenever they do.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="triggers-api" \
      org.opencontainers.image.description="Durable event ingestion and signed webhook delivery" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="debian:${DEBIAN_RELEASE}-slim"

COPY --from=builder /app/target/release/triggers-api /usr/local/bin/triggers-api

USER 10001:10001
ENV TRIGGERS_LISTEN=0.0.0.0:8080
EXPOSE 8080

ENTRYPOINT ["/usr/local/bin/triggers-api"]
CMD ["serve"]
