#!/usr/bin/env bash
# check_docs.sh - the code examples in docs/ are the files that `make test` builds and runs.
# A block that follows a line `<!-- example: PATH -->` must equal PATH byte for byte; in
# docs/architecture.md every "`name()` in `FILE`" names a function FILE defines, and every
# `src/...`, `tools/...` or `tests/...` path exists.
set -u
cd "$(dirname "$0")/.."
passed=0 failed=0
for doc in docs/*.md; do
    while IFS= read -r path; do
        block=$(awk -v marker="<!-- example: $path -->" '
            $0 == marker { found = 1; next }
            found == 1 && /^```/ { if (inblock) exit; inblock = 1; next }
            found == 1 && inblock { print }' "$doc")
        if [ "$block" == "$(cat "$path")" ]; then
            passed=$((passed + 1))
        else
            echo "check_docs: $doc: the example differs from $path (copy the file into the doc)"
            failed=$((failed + 1))
        fi
    done < <(sed -n 's/^<!-- example: \(.*\) -->$/\1/p' "$doc")
done
# The map of docs/architecture.md: functions in their files, paths that exist.
while IFS= read -r line; do
    case $line in
    ok*) passed=$((passed + 1)) ;;
    *) echo "check_docs: docs/architecture.md: $line"; failed=$((failed + 1)) ;;
    esac
done < <(python3 - docs/architecture.md <<'PY'
import re, sys, os
text = open(sys.argv[1]).read()
for fn, path in re.findall(r"`(\w+)\(\)`\s+in\s+`([\w/.-]+)`", text):
    body = open(path).read() if os.path.isfile(path) else ""
    if re.search(r"^[a-z][^;\n]*\b%s\(" % fn, body, re.M):
        print("ok")
    else:
        print("%s() is not defined in %s" % (fn, path))
for path in sorted(set(re.findall(r"`((?:src|tools|tests|bench|fuzz)/[\w/.<>*-]+)`", text))):
    if "<" in path or "*" in path or path.endswith("/") and os.path.isdir(path) or os.path.exists(path):
        print("ok")
    else:
        print("%s does not exist" % path)
PY
)
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
