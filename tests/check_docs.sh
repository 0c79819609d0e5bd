#!/usr/bin/env bash
# check_docs.sh - the code examples in docs/ are the files that `make test` builds and runs.
# A block that follows a line `<!-- example: PATH -->` must equal PATH byte for byte.
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
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
