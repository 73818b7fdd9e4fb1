#!/usr/bin/env bash
# Installs the Debian packages the project uses when they are missing:
# emoji fonts (two sprite styles of the embedded data) and Chromium (explorer page test).
# Needs root and apt-get; elsewhere it says what to install and carries on.
set -euo pipefail
need=()
[ -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || need+=(fonts-noto-color-emoji)
ls /usr/share/fonts/truetype/ancient-scripts/Symbola_hint.ttf >/dev/null 2>&1 \
  || ls /usr/share/fonts/*/*/Symbola*.ttf >/dev/null 2>&1 || need+=(fonts-symbola)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "note: please install ${need[*]} (Debian/Ubuntu names); styles or tests needing them are skipped" >&2
fi
