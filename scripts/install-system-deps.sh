#!/usr/bin/env bash
# Installs the system packages povstorm needs and checks what it cannot
# install. Idempotent: does nothing when everything is present.
set -euo pipefail

need=()
command -v povray >/dev/null 2>&1 || need+=(povray)
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || need+=(ffmpeg)
[ -d /usr/share/doc/povray/examples ] || need+=(povray-examples)
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
# POV-Ray's preload library (client/povstorm/povray/nopoll.py) is built on
# first use with the C compiler; without one POV-Ray keeps its idle polls.
command -v cc >/dev/null 2>&1 || need+=(gcc)
[ -e /usr/include/pthread.h ] || need+=(libc6-dev)
# The contact sheet's frame numbers: ffmpeg's drawtext finds a font through fontconfig.
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
# The web view's browser test (tests/test_ui.py): headless Chromium driven by
# Selenium through the chromedriver of the same Debian source, so the two match.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)

if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! command -v gcloud >/dev/null 2>&1; then
  echo "povstorm: gcloud is missing: install the Google Cloud CLI with its Firestore and Pub/Sub emulators" >&2
  exit 1
fi
if ! command -v terraform >/dev/null 2>&1; then
  echo "povstorm: terraform is missing (the static checks of terraform/ need it): install it from HashiCorp's Debian repository" >&2
  exit 1
fi
sdk=$(dirname "$(dirname "$(readlink -f "$(command -v gcloud)")")")
for component in cloud-firestore-emulator pubsub-emulator; do
  if [ ! -d "$sdk/platform/$component" ]; then
    echo "povstorm: the gcloud component $component is missing: gcloud components install $component (or apt-get install google-cloud-cli-${component/cloud-/})" >&2
    exit 1
  fi
done
