#!/usr/bin/env bash
# Install the Debian packages of one profile (run|test) that are not installed yet.
# The list and the reason for each package: scripts/debian-packages.txt.
set -euo pipefail
profile=${1:?usage: install-debian-packages.sh run|test}
list="$(dirname "$0")/debian-packages.txt"
missing=()
while read -r package profiles; do
  case "$package" in ''|'#'*) continue ;; esac
  # the profiles column ends where the description starts: words that are profiles
  read -r -a words <<<"$profiles"
  wanted=0
  for word in "${words[@]}"; do
    case "$word" in run|test) [ "$word" = "$profile" ] && wanted=1 ;; *) break ;; esac
  done
  [ "$wanted" = 1 ] || continue
  status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$package")
done <"$list"
[ ${#missing[@]} -eq 0 ] && exit 0
echo "Installing Debian packages (${profile}): ${missing[*]}"
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
