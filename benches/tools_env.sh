# Sourced by the benchmark scripts that run cairn, restic and borg side by side: throwaway
# passwords (unless set), and borg 1.2 (Debian package borgbackup) with its defaults' encryption,
# repokey with BLAKE2b, or with SHA-256 where the CPU has SHA instructions (borg's own advice).
export CAIRN_PASSWORD=${CAIRN_PASSWORD:-bench-password}
export RESTIC_PASSWORD=${RESTIC_PASSWORD:-bench-password}
export BORG_PASSPHRASE=${BORG_PASSPHRASE:-bench-password} BORG_DISPLAY_PASSPHRASE=no BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
BORG_ENCRYPTION=repokey-blake2
if grep -qw sha_ni /proc/cpuinfo; then BORG_ENCRYPTION=repokey; fi
