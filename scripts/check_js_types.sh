#!/usr/bin/env bash
# Type-check the front ends (patientml_widgets/static/*.js, JSDoc against @anywidget/types) with
# tsc --strict. Nothing is installed in the repository: the two npm packages go to a temporary
# folder (they need the npm registry), so installing or using the package never needs node or npm.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
npm install --silent --no-audit --no-fund --prefix "$tmp" typescript@5.9.3 @anywidget/types@0.4.0 >/dev/null
files=$(printf '"%s",' "$repo"/patientml_widgets/static/*.js)
cat >"$tmp/tsconfig.json" <<JSON
{
  "compilerOptions": {
    "allowJs": true, "checkJs": true, "noEmit": true, "strict": true, "types": [],
    "target": "es2022", "module": "esnext", "moduleResolution": "bundler", "lib": ["es2022", "dom", "dom.iterable"],
    "paths": { "@anywidget/types": ["./node_modules/@anywidget/types/dist/index.d.ts"] }
  },
  "files": [${files%,}]
}
JSON
"$tmp/node_modules/.bin/tsc" -p "$tmp/tsconfig.json"
echo "types: ok ($(ls patientml_widgets/static/*.js | wc -l) modules)"
