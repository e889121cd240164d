#!/usr/bin/env bash
# Fill images/wheels/ with the controller's Python dependencies as wheels for
# the image's Python (CPython 3.11, this machine's architecture), so that
# `docker build` installs them offline. With no wheels here the build uses PyPI.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
py=${PYTHON:-python3}
arch=$(uname -m)
rm -f "$here"/*.whl
sed -n '/^dependencies = \[/,/^\]/p' "$repo/controller/pyproject.toml" | grep -o '"[^"]*"' | tr -d '"' \
  >"$here/requirements.txt"
# building the controller itself offline (--no-build-isolation) needs these two
printf "setuptools>=65\nwheel\n" >>"$here/requirements.txt"
# pyspf is published as an sdist only: made into a (pure-Python) wheel here instead.
sdist_only='^pyspf[<>=!~ ]'
grep -v "$sdist_only" "$here/requirements.txt" >"$here/requirements.binary.txt"
"$py" -m pip download --quiet --dest "$here" --only-binary=:all: \
  --python-version 3.11 --implementation cp --abi cp311 \
  --platform "manylinux2014_${arch}" --platform "manylinux_2_17_${arch}" \
  --platform "manylinux_2_28_${arch}" --platform any \
  -r "$here/requirements.binary.txt"
grep "$sdist_only" "$here/requirements.txt" | xargs -r -d '\n' "$py" -m pip wheel --quiet --no-deps --wheel-dir "$here"
rm -f "$here/requirements.binary.txt"
echo "wheels ready: $(ls "$here"/*.whl | wc -l)"
