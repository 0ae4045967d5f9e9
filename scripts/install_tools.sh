#!/usr/bin/env bash
# Install the synthesis programs of the sound bank (espeak-ng, flite, fluidsynth + a GM soundfont, sox) and
# chromium (tests/test_analyze_cli.py renders the analyze report headless; CI=true runs every test)
# with --no-install-recommends (fluidsynth's recommends pull a whole GUI stack). Root only; never fatal.
set -u
need=()
for prog in espeak-ng flite fluidsynth chromium; do
  command -v "$prog" >/dev/null 2>&1 || need+=("$prog")
done
[ -f /usr/share/sounds/sf2/TimGM6mb.sf2 ] || [ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || need+=("timgm6mb-soundfont")
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != "0" ]; then
  echo "note: not root, so ${need[*]} not installed; synthetic speech/instrument clips will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
  || echo "note: could not install ${need[*]}; synthetic clips will be skipped" >&2
exit 0
