#!/usr/bin/env bash
# Where the time of a make run goes: use this script as make's shell.
#
#   make -j3 test SHELL=tools/recipe_times.sh           # or: bash .ci/run test SHELL=tools/recipe_times.sh
#   tools/recipe_times.sh --report                       # the recipe lines by CPU time, and the totals
#
# Each recipe line runs in bash as it would without this script (make's .SHELLFLAGS come through), then one line
# is appended to $RECIPE_TIMES (default _build/recipe-times.tsv, relative to make's directory), tab-separated:
#   start (s since the epoch)  wall s  user CPU s  system CPU s  exit status  make level  command
# The CPU times are those of the line's processes and of every process they waited for (a pytest run, its
# kernels, a sub-make's recipes). A process that is not waited for (a browser's renderer that its driver kills)
# is not counted: compare the total with the machine's busy time (/proc/stat) to see how much that leaves out.
# A sub-make's lines are logged too, one level deeper (the top make's recipe lines are at level 1, the $(shell)
# calls it makes while reading its Makefile at level 0); the report's totals add up levels 0 and 1 only.
set -u

if [ "${1:-}" = "--report" ]; then
  file="${2:-${RECIPE_TIMES:-_build/recipe-times.tsv}}"
  [ -s "$file" ] || { echo "no recipe times in $file: run make with SHELL=$0 first" >&2; exit 2; }
  # one pass: the totals first, then every line, by CPU time (through sort)
  awk -F'\t' '
    { row[NR] = $0
      if (NR == 1 || $1 < first) first = $1
      if ($1 + $2 > last) last = $1 + $2
      if ($6 <= 1) { wall += $2; cpu += $3 + $4; n++ } }
    END {
      printf "%d recipe lines (%d outermost); %.1f s from the first start to the last end; " \
             "CPU of the outermost lines: %.1f s (their wall times add up to %.1f s)\n", NR, n, last - first, cpu, wall
      printf "%8s %8s %6s  %s\n", "CPU s", "wall s", "start", "command"
      fflush()
      for (i = 1; i <= NR; i++) {
        split(row[i], f, "\t")
        printf "%8.1f %8.1f %6.0f  %s%s%s\n", f[3] + f[4], f[2], f[1] - first, (f[6] > 1 ? "  (sub-make) " : ""),
               substr(f[7], 1, 110), (f[5] ? "  (exit status " f[5] ")" : "") | "sort -gr"
      }
    }' "$file"
  exit 0
fi

# the CPU times come from /proc (Linux)
[ -r "/proc/$$/stat" ] || { echo "$0: no /proc/$$/stat to read CPU times from (Linux only)" >&2; exit 2; }
log="${RECIPE_TIMES:-_build/recipe-times.tsv}"
start=$(date +%s.%N)
/bin/bash "$@"
status=$?
end=$(date +%s.%N)
# the user and system CPU time of the children this shell has waited for (bash above, and what it waited for):
# fields 16 and 17 of this shell's /proc/PID/stat, in clock ticks (read here, not in a subshell, which has its own)
read -r -a stat < "/proc/$$/stat"
times=$(awk -v a="$start" -v b="$end" -v u="${stat[15]}" -v s="${stat[16]}" -v hz="$(getconf CLK_TCK)" \
  'BEGIN { printf "%.2f\t%.2f\t%.2f", b - a, u / hz, s / hz }')
command=$(printf '%s' "${!#}" | tr '\t\n' '  ' | cut -c1-400)
mkdir -p "$(dirname "$log")"
printf '%s\t%s\t%s\t%s\t%s\n' "$start" "$times" "$status" "${MAKELEVEL:-0}" "$command" >> "$log"
exit "$status"
