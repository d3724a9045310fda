#!/usr/bin/env bash
# System packages the remote-target tests need: a real sshd and ssh client, the real adb, and qemu-user-static +
# debootstrap for the emulated arm64 Raspberry Pi (and, optionally, a headless Chromium). Idempotent: installs only what is missing, runs `apt-get update`
# at most once, and does nothing (exit 0) when not root or without apt-get; the tests then skip with a reason.
set -euo pipefail

PACKAGES=(openssh-server openssh-client adb qemu-user-static binfmt-support debootstrap)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup-system: not root; skipping apt installs (remote-target tests that need them will skip)" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-query >/dev/null 2>&1; then
  echo "setup-system: no apt-get/dpkg here; skipping (remote-target tests that need them will skip)" >&2
  exit 0
fi

missing=()
updated=0
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$pkg")
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup-system: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && updated=1
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Headless Chromium for the test that looks at the report's first screen (1300x900). Optional: where the package is
# not in apt (Ubuntu ships it as a snap) that one test skips with the reason.
if ! command -v chromium >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  [ "$updated" = 1 ] || apt-get update -qq || true
  apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
    || echo "setup-system: chromium not installable here; the report's first-screen test will skip" >&2
fi

# sshd refuses to start without its privilege-separation directory.
mkdir -p /run/sshd
# The emulated Pi runs aarch64 binaries through binfmt_misc.
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
fi
if [ -e /proc/sys/fs/binfmt_misc/register ] && ! grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null; then
  update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
fi
exit 0
