# Shared helpers for scripts/testbed and scripts/setup (sourced, not run).
# Everything expensive lives in $PINLESS_CACHE (outside the clone), keyed by version.

PINLESS_CACHE=${PINLESS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pinless}
TESTBED_D=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$TESTBED_D/../.." && pwd)

# Loud failures: in a script running with errexit, any failing command prints one line naming
# the script, the file:line and the command before the script ends (never a silent exit).
# errtrace (-E) makes functions, command substitutions and subshells report too.
pl_on_err() {
  local rc=$? src=${BASH_SOURCE[1]:-$0} line=${BASH_LINENO[0]:-?}
  printf '%s: error: %s:%s: `%s` failed with status %s\n' "$(basename "$0")" "${src#"$REPO_ROOT"/}" \
    "$line" "$BASH_COMMAND" "$rc" >&2
}
if [[ $- == *e* ]]; then set -E; trap pl_on_err ERR; fi

tb_log() { printf '[testbed %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
tb_die() { printf 'testbed: error: %s\n' "$*" >&2; exit 2; }

# apt-get with a private state directory for another Debian suite (sid), so that the
# system's own apt setup is never touched. The mirror is whatever the system already uses.
tb_sid_apt() {
  local dir=$PINLESS_CACHE/apt-sid
  mkdir -p "$dir/lists/partial" "$dir/archives/partial"
  if [ ! -s "$dir/sources.list" ]; then
    local uri
    uri=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null)
    [ -n "$uri" ] || uri=$(awk '$1=="deb"{for(i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list 2>/dev/null)
    [ -n "$uri" ] || tb_die "cannot find the system's Debian mirror in /etc/apt (needed to fetch sid kernels)"
    printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s sid main\n' "$uri" >"$dir/sources.list"
  fi
  "$@" -o Dir::Etc::SourceList="$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null \
       -o Dir::State::Lists="$dir/lists" -o Dir::Cache::Archives="$dir/archives" \
       -o Dir::State::status=/dev/null -o APT::Sandbox::User=root
}

# Refresh the private sid index at most once a day.
tb_sid_update() {
  local stamp=$PINLESS_CACHE/apt-sid/updated
  if [ ! -f "$stamp" ] || [ -n "$(find "$stamp" -mmin +1440 2>/dev/null)" ]; then
    tb_log "refreshing Debian sid package index (private apt dir)"
    tb_sid_apt apt-get -qq update >/dev/null || tb_die "apt-get update for sid failed"
    touch "$stamp"
  fi
}

# Install Debian (bookworm) packages that are missing. Idempotent and quiet when all present.
tb_apt_install() {
  local missing=() p
  for p in "$@"; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  tb_log "installing Debian packages: ${missing[*]}"
  if [ ! -f "$PINLESS_CACHE/.apt-updated" ] || [ -n "$(find "$PINLESS_CACHE/.apt-updated" -mmin +1440 2>/dev/null)" ]; then
    apt-get -qq update >/dev/null || tb_die "apt-get update failed"
    mkdir -p "$PINLESS_CACHE" && touch "$PINLESS_CACHE/.apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get -qq install -y --no-install-recommends "${missing[@]}" >/dev/null \
    || tb_die "apt-get install ${missing[*]} failed"
}

# pl_kvm_decide BUILD_DIR: may pinless run guests directly on this host, or must it use the
# testbed? Decided by what `pinless check` measures (a timed guest loop), never by the mere
# existence of /dev/kvm: a kvm_pvm /dev/kvm runs guest code thousands of times slower than
# the host. Sets PL_KVM (direct|testbed) and PL_KVM_WHY (one line for the user).
# PINLESS_KVM=direct|testbed overrides the decision (for experts; default auto).
pl_kvm_decide() {
  local build=${1:-$REPO_ROOT/build} json rc=0 summary
  case "${PINLESS_KVM:-auto}" in
    direct) PL_KVM=direct; PL_KVM_WHY="PINLESS_KVM=direct: running pinless on this host's /dev/kvm as asked"; return 0 ;;
    testbed) PL_KVM=testbed; PL_KVM_WHY="PINLESS_KVM=testbed: using the testbed as asked"; return 0 ;;
    auto) ;;
    *) tb_die "PINLESS_KVM must be auto, direct or testbed, not '${PINLESS_KVM}'" ;;
  esac
  if [ ! -e /dev/kvm ]; then
    PL_KVM=testbed PL_KVM_WHY="no /dev/kvm on this host; using the testbed"
    return 0
  fi
  [ -x "$build/pinless" ] || tb_die "$build/pinless is not built: cannot run pinless check"
  json=$("$build/pinless" check --json 2>/dev/null) || rc=$?
  summary=$(printf '%s' "$json" | python3 -c 'import json, sys; print(json.load(sys.stdin)["summary"])' 2>/dev/null) ||
    tb_die "pinless check --json exited $rc without a report (run $build/pinless check to see why)"
  case "$rc" in
    0) PL_KVM=direct PL_KVM_WHY="$summary; running pinless directly" ;;
    1) PL_KVM=testbed PL_KVM_WHY="$summary; using the testbed" ;;
    *) tb_die "pinless check exited $rc: $summary" ;;
  esac
}

tb_sha() { sha256sum "$@" | sha256sum | cut -c1-12; }
