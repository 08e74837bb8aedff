# Sourced by every script that runs the go command: modules come from a module proxy
# only, checked against go.sum and the checksum database; never straight from their
# source hosts ("direct"), which a proxy outage would otherwise fall back to silently.
taskfleet_goproxy=$(go env GOPROXY | tr ',|' '\n\n' | { grep -vx -e direct -e off || true; } | paste -sd, -)
if [ -z "$taskfleet_goproxy" ]; then
  echo "go: GOPROXY is '$(go env GOPROXY)', no module proxy; set GOPROXY to one (or set TASKFLEET_TESTENV_BIN to prebuilt binaries)" >&2
  exit 1
fi
export GOPROXY=$taskfleet_goproxy GONOPROXY= GOPRIVATE=
