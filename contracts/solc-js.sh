#!/usr/bin/env bash
# Offline solc for forge: a thin wrapper around solc-js (npm `solc`).
#
# forge calls `solc --version` to learn the compiler version and `solc --standard-json`
# (input on stdin) to compile. solc-js reads stdin synchronously and fails with EAGAIN on
# forge's non-blocking pipe, so stdin is buffered to a temporary file first and handed to
# solc-js.cjs, which compiles with an import callback that reads files inside forge's allowed
# paths. Lines starting with `>>>` (solc-js progress chatter) are dropped so stdout stays pure
# JSON. foundry.toml points `solc` at this file; nothing is downloaded.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
solcjs="$here/../node_modules/solc/solc.js"  # its CLI answers --version
if [[ ! -f "$solcjs" ]]; then
    echo "solc-js not found at $solcjs: run 'make setup' (npm ci) first" >&2
    exit 1
fi
case "${1:-}" in
    --version)
        # solc-js answers e.g. "0.8.37+commit.f401782d.Emscripten.clang"; forge wants native-style output.
        raw="$(node "$solcjs" --version)"
        version="${raw%%.Emscripten*}"
        echo "solc, the solidity compiler commandline interface"
        echo "Version: ${version}.Linux.g++"
        ;;
    *)
        # forge sends `--allow-paths A,B --base-path DIR --standard-json` with the input on stdin.
        tmp="$(mktemp "${TMPDIR:-/tmp}/solcjs.XXXXXX")"
        trap 'rm -f "$tmp" "$tmp.out"' EXIT
        cat > "$tmp"
        args=()
        while [[ $# -gt 0 ]]; do
            case "$1" in
                --base-path|--allow-paths|--include-path) args+=("$1" "$2"); shift 2 ;;
                *) shift ;;
            esac
        done
        rc=0
        node "$here/solc-js.cjs" "$tmp" "${args[@]}" > "$tmp.out" || rc=$?
        grep -v '^>>>' "$tmp.out" || true
        exit "$rc"
        ;;
esac
