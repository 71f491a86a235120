# shellcheck shell=bash
# Sourced by the CI scripts that run Python (.ci/k8s-validate, .ci/monitoring-check):
# `ensure_ci_venv` makes sure the venv in .ci/.tools/venv (git-ignored) holds the pinned
# packages below, installing them from PyPI on first use (offline afterwards), and sets `py` to
# its interpreter. Needs python3 (3.11) with venv and pip.

# Pinned, with every dependency, so a fresh machine gets what CI tested.
CI_VENV_REQUIREMENTS=(
  kubernetes-validate==1.37.0
  PyYAML==6.0.4
  jsonschema==4.26.0
  jsonschema-specifications==2025.9.1
  referencing==0.37.0
  rpds-py==2026.9.1
  attrs==26.1.0
  importlib_resources==7.1.0
  packaging==26.4
  typing_extensions==4.16.0
)

ensure_ci_venv() {
  local root venv stamp wanted
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  venv="${root}/.ci/.tools/venv"
  stamp="${venv}/.ci-requirements"
  py="${venv}/bin/python"
  wanted="$(printf '%s\n' "${CI_VENV_REQUIREMENTS[@]}")"
  if [[ ! -x "${py}" || ! -f "${stamp}" || "$(cat "${stamp}")" != "${wanted}" ]]; then
    command -v python3 >/dev/null 2>&1 || { echo "ci: python3 is needed and not on PATH" >&2; return 1; }
    echo "ci: installing ${CI_VENV_REQUIREMENTS[*]} into .ci/.tools/venv" >&2
    rm -rf "${venv}"
    if ! python3 -m venv "${venv}"; then
      # Debian's python3 ships venv/ensurepip separately.
      if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        echo "ci: python3 -m venv failed (Debian: apt-get install python3-venv)" >&2
        return 1
      fi
      rm -rf "${venv}"
      if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; }; then
        echo "ci: apt-get install python3-venv failed" >&2
        return 1
      fi
      python3 -m venv "${venv}" || { echo "ci: python3 -m venv failed even with python3-venv installed" >&2; return 1; }
    fi
    "${py}" -m pip install --quiet --disable-pip-version-check --no-input "${CI_VENV_REQUIREMENTS[@]}" ||
      { echo "ci: pip install of ${CI_VENV_REQUIREMENTS[*]} failed" >&2; return 1; }
    printf '%s' "${wanted}" >"${stamp}"
  fi
  "${py}" -c 'import kubernetes_validate, yaml, jsonschema' ||
    { echo "ci: the venv in .ci/.tools/venv is broken: delete it" >&2; return 1; }
}
