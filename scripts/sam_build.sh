#!/usr/bin/env bash
# `sam build` as a platform team runs it: every function of template.yaml cross-built for arm64
# (rust-cargolambda: cargo-lambda from the project's virtualenv, zig as the linker), then checks
# that each one has a `bootstrap` that is an arm64 Linux executable, and prints its size and the
# build time. Release artefacts share the workspace's target directory, so a rerun is quick.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_venv
cd "$ROOT"
export SAM_CLI_TELEMETRY=0 PATH="$VENV/bin:$PATH"
# SAM's rust-cargolambda build copies each bootstrap from <CodeUri>/target/lambda, so cargo
# must build there whatever CARGO_TARGET_DIR the caller has set.
export CARGO_TARGET_DIR="$ROOT/target"

started=$SECONDS
"$VENV/bin/sam" build --template template.yaml >"$LOCAL/sam-build.log" 2>&1 \
  || { tail -n 60 "$LOCAL/sam-build.log" >&2; die "sam build failed (log: .local/sam-build.log)"; }
build_seconds=$((SECONDS - started))

# The functions of the template: a resource line followed by its Serverless::Function type.
mapfile -t functions < <(awk '/^  [A-Za-z0-9]+:$/ {name=$1; sub(":", "", name)}
  /^    Type: AWS::Serverless::Function$/ {print name}' template.yaml)
[ "${#functions[@]}" -gt 0 ] || die "no functions found in template.yaml"

passed=0 failed=0
for function in "${functions[@]}"; do
  bootstrap=".aws-sam/build/$function/bootstrap"
  # ELF magic, then e_machine (bytes 18-19, little endian) 0xB7 = AArch64.
  if [ -x "$bootstrap" ] && [ "$(head -c 4 "$bootstrap" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ] \
    && [ "$(od -An -tx1 -j18 -N2 "$bootstrap" | tr -d ' \n')" = b700 ]; then
    printf 'sam build: %-24s bootstrap %6.1f MiB (arm64)\n' "$function" \
      "$(awk -v b="$(stat -c %s "$bootstrap")" 'BEGIN {print b / 1048576}')"
    passed=$((passed + 1))
  else
    printf 'sam build: %-24s no arm64 bootstrap at %s\n' "$function" "$bootstrap" >&2
    failed=$((failed + 1))
  fi
done
echo "sam build: ${#functions[@]} functions in ${build_seconds} s"
echo "sam build: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
