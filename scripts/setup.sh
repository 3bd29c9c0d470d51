#!/usr/bin/env bash
# Install everything the project needs on a fresh Debian machine: system packages, then a venv with the project.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v rabbitmq-server >/dev/null 2>&1 || need_apt+=(rabbitmq-server)
if true; then  # the dashboard tests need chromium
    command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# the unprivileged account the TMS local backend runs pilots as when it runs as root (TMS_LOCAL_PILOT_USER)
pilot_user="${TMS_LOCAL_PILOT_USER:-ewms-pilot}"
if [ "$(id -u)" = 0 ] && ! id -u "$pilot_user" >/dev/null 2>&1; then
    echo "setup: creating the system account $pilot_user"
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$pilot_user"
fi
if [ "$(id -u)" = 0 ]; then  # that account runs the project's Python (the base install and this checkout's .venv):
    # let it search (not list) the dirs above both, e.g. a checkout under a private `mktemp -d` dir
    for dir in "$(python3 -c 'import sys; print(sys.base_prefix)')" "$PWD"; do
        while [ "$dir" != / ]; do
            [ -n "$(find "$dir" -maxdepth 0 -perm -o=x)" ] || { echo "setup: chmod o+x $dir"; chmod o+x "$dir"; }
            dir=$(dirname "$dir")
        done
    done
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    python3 -m venv .venv
fi
if ! .venv/bin/python -c "import wms, tms, pilot, mqs_client, ewms_wire, ewms_dev, pytest, htcondor2" >/dev/null 2>&1 \
    || [ pyproject.toml -nt .venv/.installed ]; then
    echo "setup: installing the project and its dependencies into .venv"
    .venv/bin/pip install -q --disable-pip-version-check -U pip
    .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
    touch .venv/.installed
fi
echo "setup: ready"
