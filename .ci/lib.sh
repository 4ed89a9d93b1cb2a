# Shared by .ci/run and .ci/steps/*.sh (sourced, not run).

# run_pytest CMD...: run a pytest command; fail CI when tests fail and when
# pytest collected nothing (its exit code 5), which must never pass silently.
run_pytest() {
    local status=0
    "$@" || status=$?
    if [ "$status" -eq 5 ]; then
        echo "CI: pytest collected no tests for: $*" >&2
        exit 1
    elif [ "$status" -ne 0 ]; then
        echo "CI: tests failed (exit $status): $*" >&2
        exit "$status"
    fi
}

# ensure_commands PACKAGE:COMMAND...: apt-get install each Debian package whose
# command is missing (CI runs as root on a machine that reaches Debian's mirror).
ensure_commands() {
    local missing=()
    local pair
    for pair in "$@"; do
        command -v "${pair#*:}" >/dev/null 2>&1 || missing+=("${pair%%:*}")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "CI: installing ${missing[*]}"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# ensure_packages PACKAGE...: apt-get install the Debian packages (libraries,
# which have no command to look for) that dpkg does not list as installed.
ensure_packages() {
    local missing=()
    local package
    for package in "$@"; do
        dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "CI: installing ${missing[*]}"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# copy_checkout DEST: a copy of the checkout without build outputs, for a build
# with other options that must not touch the tested install.
copy_checkout() {
    mkdir -p "$1"
    git -C "$repo" ls-files -z --cached --others --exclude-standard \
        | (cd "$repo" && xargs -0 cp --parents -t "$1")
}
