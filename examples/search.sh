#!/usr/bin/env bash
# The quickstart's search: the bundled model on CPU, SQLite storage under studies/, the best configuration
# exported as studies/demo.preset.json. Extra arguments go to `autotune search` (the tests make it shorter).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
autotune search --model "$here/models/codelm-4m" --device cpu --space quick --trials 8 --confirm 2 --study demo "$@"
