#!/usr/bin/env bash
# Debian's docker-compose (1.29) for tests/deploy: `docker-compose -f docker-compose.yml config -q`
# validates the compose files without a Docker engine; no-op when present.
exec bash "$(dirname "$0")/apt_ensure.sh" install_compose 'command -v docker-compose' docker-compose
