#!/usr/bin/env bash
# Builds the image from the Dockerfile with BuildKit and runs it for real,
# against the dev Redis and PostgreSQL of scripts/dev-deps.sh. Slow (a
# release build: minutes), so not part of scripts/test.sh.
#
#   scripts/image-test.sh
#
# Needs a Docker engine. Where none runs, it installs Debian's docker.io and
# starts dockerd without networking of its own (no bridge, no iptables:
# sandboxes allow neither), so builds and containers use the host network.
# Base images missing locally are made here, so nothing is pulled from a
# registry: debian:bookworm-slim from `debootstrap --variant=minbase`, and a
# stand-in for rust:1-bookworm from the same plus this machine's Rust
# toolchain (~/.rustup, ~/.cargo/bin) and CA certificates.
#
# Asserts: the build succeeds with BuildKit; the labels carry the base image
# and the revision; the image runs as uid 10001; `serve` in production mode
# with a key from `new-secret-key` answers /health and /ready, read-only and
# with every capability dropped; SIGTERM stops it with exit status 0.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
WORK="$ROOT/.data/image-test"
TAG="triggers-api:image-test"
PORT="${IMAGE_TEST_PORT:-18490}"
RELEASE=bookworm
REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
NAME="triggers-image-test-$$"
STARTED=$SECONDS
# Debian's client: it carries BuildKit itself, where a newer client needs
# the buildx plugin.
DOCKER="${DOCKER:-/usr/bin/docker}"

step() { printf '==> %s\n' "$*" >&2; }
pass() { printf 'PASS %s\n' "$*"; }
die() {
    printf 'FAIL %s\n' "$*"
    exit 1
}

DOCKERD_PID=""
cleanup() {
    "$DOCKER" rm -f "$NAME" >/dev/null 2>&1 || true
    if [[ -n "$DOCKERD_PID" ]]; then
        kill "$DOCKERD_PID" 2>/dev/null || true
        wait "$DOCKERD_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

wait_for() { # seconds command...
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 1
    done
}

mkdir -p "$WORK"

# ------------------------------------------------------------- engine ---
if [[ ! -x "$DOCKER" ]] || ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
    step "installing docker.io and debootstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null
fi
if ! "$DOCKER" info >/dev/null 2>&1; then
    if [[ ! -f /etc/docker/daemon.json ]]; then
        mkdir -p /etc/docker
        echo '{"bridge": "none", "iptables": false, "ip-forward": false, "ip-masq": false}' >/etc/docker/daemon.json
    fi
    step "starting dockerd (log in $WORK/dockerd.log)"
    dockerd >"$WORK/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    wait_for 60 "$DOCKER" info || die "dockerd did not start (see $WORK/dockerd.log)"
fi

# -------------------------------------------------------- base images ---
rootfs() { # directory extra-packages
    if [[ ! -f "$1/.complete" ]]; then
        rm -rf "$1"
        debootstrap --variant=minbase ${2:+--include="$2"} "$RELEASE" "$1" >"$1.log" 2>&1 ||
            die "debootstrap $RELEASE failed (see $1.log)"
        touch "$1/.complete"
    fi
}
if ! "$DOCKER" image inspect "debian:$RELEASE-slim" >/dev/null 2>&1; then
    step "making debian:$RELEASE-slim with debootstrap"
    rootfs "$WORK/debian"
    tar -C "$WORK/debian" --exclude=./.complete -c . | "$DOCKER" import - "debian:$RELEASE-slim" >/dev/null
fi
if ! "$DOCKER" image inspect "rust:1-$RELEASE" >/dev/null 2>&1; then
    step "making a rust:1-$RELEASE stand-in from this machine's toolchain"
    rust="$WORK/rust"
    rootfs "$rust" ca-certificates,gcc,libc6-dev,make,pkg-config,git
    toolchain="$(sed -n 's/^default_toolchain = "\(.*\)"/\1/p' "$HOME/.rustup/settings.toml")"
    [[ -d "$HOME/.rustup/toolchains/$toolchain" ]] || die "no Rust toolchain in ~/.rustup to copy"
    rm -rf "$rust/usr/local/rustup" "$rust/usr/local/cargo"
    mkdir -p "$rust/usr/local/rustup/toolchains" "$rust/usr/local/cargo"
    cp "$HOME/.rustup/settings.toml" "$rust/usr/local/rustup/"
    cp -a "$HOME/.rustup/toolchains/$toolchain" "$rust/usr/local/rustup/toolchains/"
    cp -a "$HOME/.cargo/bin" "$rust/usr/local/cargo/"
    # TLS to the crate registry may go through a local CA.
    cp /usr/local/share/ca-certificates/*.crt "$rust/usr/local/share/ca-certificates/" 2>/dev/null || true
    chroot "$rust" update-ca-certificates >/dev/null
    tar -C "$rust" --exclude=./.complete -c . | "$DOCKER" import \
        --change 'ENV CARGO_HOME=/usr/local/cargo' --change 'ENV RUSTUP_HOME=/usr/local/rustup' \
        --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        - "rust:1-$RELEASE" >/dev/null
fi

# -------------------------------------------------------------- build ---
step "building $TAG with BuildKit (log in $WORK/build.log)"
CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
DOCKER_BUILDKIT=1 "$DOCKER" build --network host --progress plain -t "$TAG" \
    --build-arg VERSION=0.1.0 --build-arg REVISION="$REVISION" --build-arg CREATED="$CREATED" \
    . >"$WORK/build.log" 2>&1 || die "the build failed (tail of $WORK/build.log: $(tail -n 5 "$WORK/build.log"))"
pass "image built with BuildKit in $((SECONDS - STARTED)) s"

label() { "$DOCKER" image inspect -f "{{ index .Config.Labels \"org.opencontainers.image.$1\" }}" "$TAG"; }
expect() { # what got want
    [[ "$2" == "$3" ]] || die "$1: got '$2', want '$3'"
    pass "$1: $2"
}
expect "label base.name" "$(label base.name)" "debian:$RELEASE-slim"
expect "label revision" "$(label revision)" "$REVISION"
expect "label created" "$(label created)" "$CREATED"
expect "image user" "$("$DOCKER" image inspect -f '{{ .Config.User }}' "$TAG")" "10001:10001"

# ---------------------------------------------------------------- run ---
# shellcheck source=scripts/dev-deps.sh
source scripts/dev-deps.sh >/dev/null
KEY="$("$DOCKER" run --rm --network host "$TAG" new-secret-key)" || die "new-secret-key failed"
[[ -n "$KEY" ]] || die "new-secret-key printed nothing"
step "running $TAG on 127.0.0.1:$PORT"
"$DOCKER" run -d --name "$NAME" --network host --read-only --tmpfs /tmp --cap-drop ALL \
    --security-opt no-new-privileges \
    -e DATABASE_URL="$DATABASE_URL" -e REDIS_URL="$REDIS_URL" -e TRIGGERS_SECRET_KEYS="$KEY" \
    -e TRIGGERS_LISTEN="127.0.0.1:$PORT" -e TRIGGERS_REDIS_PREFIX="image-test-$$" \
    -e TRIGGERS_SHUTDOWN_TIMEOUT=5s "$TAG" serve >/dev/null
healthy() { curl -fsS "http://127.0.0.1:$PORT/health"; }
ready() { curl -fsS "http://127.0.0.1:$PORT/ready"; }
if ! wait_for 90 healthy || ! wait_for 30 ready; then
    "$DOCKER" logs "$NAME" >"$WORK/run.log" 2>&1 || true
    die "the container does not answer /health and /ready (logs in $WORK/run.log)"
fi
pass "production mode with a generated key: /health and /ready answer, read-only, no capabilities"
expect "process uid" "$("$DOCKER" exec "$NAME" sh -c 'id -u' 2>/dev/null || echo '?')" "10001"

"$DOCKER" kill --signal TERM "$NAME" >/dev/null
status="$(timeout 30 "$DOCKER" wait "$NAME")" || die "the container did not stop within 30 s of SIGTERM"
"$DOCKER" logs "$NAME" >"$WORK/run.log" 2>&1 || true
expect "exit status after SIGTERM" "$status" 0
echo "PASS image test ($((SECONDS - STARTED)) s; logs in $WORK)"
